import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { API_5XX_PERCENT } from "../../infra/monitoring.ts";
import { METRICS_NAMESPACE } from "../../lib/metrics.ts";
import { FUNCTION_NAMES, GATEWAY_CONTEXT, nagFindings, type Synthesized, synthesize } from "./harness.ts";

type AlarmProps = {
  AlarmDescription: string;
  Threshold: number;
  EvaluationPeriods: number;
  ComparisonOperator: string;
  TreatMissingData: string;
  MetricName?: string;
  Namespace?: string;
  Metrics?: Array<{ Expression?: string }>;
  AlarmActions?: unknown[];
};

function alarms(s: Synthesized): AlarmProps[] {
  return Object.values(s.template.findResources("AWS::CloudWatch::Alarm")).map(
    (resource) => resource.Properties as AlarmProps,
  );
}

function alarmAbout(s: Synthesized, pattern: RegExp): AlarmProps {
  const found = alarms(s).filter((alarm) => pattern.test(alarm.AlarmDescription));
  assert.equal(found.length, 1, `alarms matching ${pattern}: ${found.length}`);
  return found[0] as AlarmProps;
}

describe("monitoring: alarms, their topic and the dashboard", () => {
  let s: Synthesized;
  before(() => {
    s = synthesize({ ...GATEWAY_CONTEXT, poolSize: "2", alarmEmail: "oncall@example.com" });
  });

  it("alarms on the dead-letter queue, the API's 5xx rate, each function's errors and throttles, and an empty pool", () => {
    assert.equal(alarms(s).length, 2 + 2 * FUNCTION_NAMES.length + 1);
    const dlq = alarmAbout(s, /dead-letter queue/);
    assert.equal(dlq.MetricName, "ApproximateNumberOfMessagesVisible");
    assert.equal(dlq.Threshold, 1);
    const rate = alarmAbout(s, /answered 5xx/);
    assert.equal(rate.Threshold, API_5XX_PERCENT);
    assert.equal(rate.EvaluationPeriods, 2);
    assert.match(rate.Metrics?.find((m) => m.Expression)?.Expression ?? "", /100 \* errors \/ requests/);
    const reaper = alarmAbout(s, /reaper failed/);
    assert.equal(reaper.MetricName, "Errors");
    assert.equal(reaper.Threshold, 1);
    for (const name of FUNCTION_NAMES) alarmAbout(s, new RegExp(`The ${name} function was throttled`));
    const pool = alarmAbout(s, /warm pool empty/);
    assert.equal(pool.Namespace, METRICS_NAMESPACE);
    assert.equal(pool.MetricName, "WarmPoolEmpty");
    for (const alarm of alarms(s)) {
      assert.equal(alarm.ComparisonOperator, "GreaterThanOrEqualToThreshold");
      assert.equal(alarm.TreatMissingData, "notBreaching", alarm.AlarmDescription);
    }
  });

  it("sends every alarm to an SNS topic that emails the operator and accepts TLS only", () => {
    s.template.resourceCountIs("AWS::SNS::Topic", 1);
    s.template.hasResourceProperties("AWS::SNS::Subscription", {
      Protocol: "email",
      Endpoint: "oncall@example.com",
    });
    s.template.hasResourceProperties("AWS::SNS::TopicPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
        ]),
      },
    });
    for (const alarm of alarms(s)) assert.equal(alarm.AlarmActions?.length, 1, alarm.AlarmDescription);
    const outputs = s.template.toJSON().Outputs as Record<string, unknown>;
    assert.ok(outputs.AlarmTopicArn && outputs.DashboardName);
  });

  it("has one dashboard, graphing the product's own metrics", () => {
    const [dashboard] = Object.values(s.template.findResources("AWS::CloudWatch::Dashboard"));
    const body = JSON.stringify(dashboard?.Properties?.DashboardBody);
    for (const metric of ["RunsOk", "RunsTimeout", "RunDuration", "KernelStartsPooled", "QueuedRunAge"]) {
      assert.match(body, new RegExp(metric));
    }
    assert.match(body, new RegExp(METRICS_NAMESPACE));
  });

  it("has no cdk-nag finding left unacknowledged", () => {
    assert.deepEqual(nagFindings(s), []);
  });

  it("makes no pool alarm without a pool and no topic without an email", () => {
    const plain = synthesize(GATEWAY_CONTEXT);
    assert.equal(alarms(plain).length, 2 + 2 * FUNCTION_NAMES.length);
    plain.template.resourceCountIs("AWS::SNS::Topic", 0);
    for (const alarm of alarms(plain)) assert.equal(alarm.AlarmActions, undefined);
  });
});
