import { type App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";

/**
 * Runs cdk-nag's AWS Solutions rules on every synth; a finding fails the synth. A finding is
 * excused only where the construct it names acknowledges it with a reason
 * (`Validations.of(construct).acknowledge`, cdk-nag v3's successor to `NagSuppressions`), so each
 * reason sits next to the resource it excuses.
 */
export function checkWithCdkNag(app: App): AwsSolutionsChecks {
  const checks = new AwsSolutionsChecks(app, { verbose: true });
  Validations.of(app).addPlugins(checks);
  return checks;
}
