import { Duration, Validations } from "aws-cdk-lib";
import type { HttpApi } from "aws-cdk-lib/aws-apigatewayv2";
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
  TreatMissingData,
} from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { Topic } from "aws-cdk-lib/aws-sns";
import { EmailSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { FUNCTION_NAMES, type FunctionName } from "../lib/functions.ts";
import { METRIC, METRICS_NAMESPACE } from "../lib/metrics.ts";
import { capitalise, type PyboxFunction } from "./functions.ts";

/** Share of API requests answered 5xx, in percent, over which the API alarm fires. */
export const API_5XX_PERCENT = 5;

/** The window every alarm looks at. */
const PERIOD = Duration.minutes(5);

/** Props of {@link Monitoring}. */
export interface MonitoringProps {
  functions: Record<FunctionName, PyboxFunction>;
  api: HttpApi;
  deadLetters: IQueue;
  /** Whether the warm pool is on: only then is an empty pool worth an alarm. */
  pooled: boolean;
  /** Where alarm notifications go by email; without it, alarms have no action (the console shows them). */
  alarmEmail?: string;
}

/**
 * What an operator watches: an alarm for each thing that needs a person (a dead-lettered message,
 * a 5xx rate, a function's errors or throttles, a failing reaper, an empty warm pool), optionally
 * sent to an SNS topic, and one dashboard of the product's own metrics (`lib/metrics.ts`) beside
 * Lambda's and API Gateway's.
 */
export class Monitoring extends Construct {
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;
  readonly topic: Topic | undefined;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const { functions, api, deadLetters } = props;
    this.topic = props.alarmEmail ? this.alarmTopic(props.alarmEmail) : undefined;

    this.alarm("DeadLetters", {
      metric: deadLetters.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: "Maximum" }),
      threshold: 1,
      description: "Queued work reached the dead-letter queue: a message the consumer could never handle",
    });
    const serverErrorRate = new MathExpression({
      expression: "IF(requests > 0, 100 * errors / requests, 0)",
      usingMetrics: {
        errors: api.metricServerError({ period: PERIOD, statistic: "Sum" }),
        requests: api.metricCount({ period: PERIOD, statistic: "Sum" }),
      },
      period: PERIOD,
      label: "5xx %",
    });
    this.alarm("Api5xxRate", {
      metric: serverErrorRate,
      threshold: API_5XX_PERCENT,
      evaluationPeriods: 2,
      description: `More than ${API_5XX_PERCENT}% of API requests answered 5xx for 10 minutes`,
    });
    for (const name of FUNCTION_NAMES) {
      const fn = functions[name].function;
      this.alarm(`${capitalise(name)}Errors`, {
        metric: fn.metricErrors({ period: PERIOD, statistic: "Sum" }),
        threshold: 1,
        description:
          name === "reaper"
            ? "The reaper failed: idle kernels are not being stopped"
            : `The ${name} function failed (a crash or a timeout, not an error answer)`,
      });
      this.alarm(`${capitalise(name)}Throttles`, {
        metric: fn.metricThrottles({ period: PERIOD, statistic: "Sum" }),
        threshold: 1,
        description: `The ${name} function was throttled: raise its concurrency or the account's`,
      });
    }
    if (props.pooled) {
      this.alarm("WarmPoolEmpty", {
        metric: productMetric(METRIC.warmPoolEmpty, "Sum"),
        threshold: 1,
        description: "Starts found the warm pool empty and started cold: raise the pool size",
      });
    }
    this.dashboard = this.board(props);
  }

  private alarm(
    id: string,
    options: { metric: IMetric; threshold: number; description: string; evaluationPeriods?: number },
  ): void {
    const alarm = new Alarm(this, id, {
      metric: options.metric,
      threshold: options.threshold,
      evaluationPeriods: options.evaluationPeriods ?? 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
      alarmDescription: options.description,
    });
    if (this.topic) alarm.addAlarmAction(new SnsAction(this.topic));
    this.alarms.push(alarm);
  }

  private alarmTopic(email: string): Topic {
    const topic = new Topic(this, "AlarmTopic", { displayName: "pybox alarms", enforceSSL: true });
    topic.addSubscription(new EmailSubscription(email));
    Validations.of(topic).acknowledge({
      id: "AwsSolutions-SNS2",
      reason:
        "Alarm notifications carry alarm names and states only; CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, and a customer key for this would cost more than it protects.",
    });
    return topic;
  }

  private board(props: MonitoringProps): Dashboard {
    const { api, functions } = props;
    const graph = (title: string, left: IMetric[], right: IMetric[] = []) =>
      new GraphWidget({ title, left, right, width: 12, height: 6 });
    const dashboard = new Dashboard(this, "Dashboard", { defaultInterval: Duration.hours(3) });
    dashboard.addWidgets(
      graph(
        "API requests and 5xx",
        [api.metricCount({ period: PERIOD })],
        [api.metricServerError({ period: PERIOD }), api.metricClientError({ period: PERIOD })],
      ),
      graph("Runs by outcome", [
        productMetric(METRIC.runsOk, "Sum"),
        productMetric(METRIC.runsError, "Sum"),
        productMetric(METRIC.runsTimeout, "Sum"),
      ]),
      graph("Run duration (ms)", [
        productMetric(METRIC.runDuration, "p50"),
        productMetric(METRIC.runDuration, "p99"),
      ]),
      graph(
        "Kernel starts",
        [productMetric(METRIC.kernelStartsCold, "Sum"), productMetric(METRIC.kernelStartsPooled, "Sum")],
        [productMetric(METRIC.startDuration, "p50"), productMetric(METRIC.startDuration, "p99")],
      ),
      graph(
        "Warm pool",
        [productMetric(METRIC.warmPoolSize, "Minimum")],
        [productMetric(METRIC.warmPoolEmpty, "Sum")],
      ),
      graph(
        "Queued runs",
        [productMetric(METRIC.queuedRunAge, "p99")],
        [props.deadLetters.metricApproximateNumberOfMessagesVisible({ period: PERIOD })],
      ),
      graph("Kernels revived and reaped", [
        productMetric(METRIC.kernelsRevived, "Sum"),
        productMetric(METRIC.kernelsReaped, "Sum"),
        productMetric(METRIC.kernelsFoundDead, "Sum"),
        productMetric(METRIC.orphansStopped, "Sum"),
      ]),
      graph(
        "Function errors and throttles",
        FUNCTION_NAMES.map((name) => functions[name].function.metricErrors({ period: PERIOD })),
        FUNCTION_NAMES.map((name) => functions[name].function.metricThrottles({ period: PERIOD })),
      ),
    );
    return dashboard;
  }
}

/** One of the product's own metrics, as Powertools writes it (dimension `service`). */
function productMetric(name: string, statistic: string): Metric {
  return new Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: "pybox" },
    statistic,
    period: PERIOD,
  });
}
