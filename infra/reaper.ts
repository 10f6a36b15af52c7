import { Duration } from "aws-cdk-lib";
import { Rule, Schedule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { Construct } from "constructs";
import type { PyboxFunction } from "./functions.ts";

/** Props of {@link ReaperSchedule}. */
export interface ReaperScheduleProps {
  reaper: PyboxFunction;
  rateMinutes: number;
}

/**
 * Runs the reaper every few minutes. A missed or failed pass is not retried: the next one comes
 * soon and would otherwise overlap it.
 */
export class ReaperSchedule extends Construct {
  readonly rule: Rule;

  constructor(scope: Construct, id: string, props: ReaperScheduleProps) {
    super(scope, id);
    const rate = Duration.minutes(props.rateMinutes);
    this.rule = new Rule(this, "Rule", {
      description: `pybox: stop idle kernels every ${props.rateMinutes} minute(s)`,
      schedule: Schedule.rate(rate),
      targets: [
        new LambdaFunction(props.reaper.function, {
          retryAttempts: 0,
          maxEventAge: Duration.minutes(Math.max(1, props.rateMinutes)),
        }),
      ],
    });
    props.reaper.function.configureAsyncInvoke({ retryAttempts: 0 });
  }
}
