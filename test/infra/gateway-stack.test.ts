import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import type { CfnResource } from "aws-cdk-lib";
import { Annotations, Match } from "aws-cdk-lib/assertions";
import { build } from "esbuild";
import { esbuildOptions, PROJECT_ROOT } from "../../infra/bundling.ts";
import { HTTP_FUNCTION_TIMEOUT } from "../../infra/functions.ts";
import { MAX_MESSAGE_BYTES, MAX_RECEIVE_COUNT } from "../../infra/queue.ts";
import { loadConfig, SYNC_RUN_LIMIT_MS, SYNC_START_LIMIT_MS } from "../../lib/config.ts";
import { ROUTES } from "../../lib/http/routes.ts";
import { TABLE_KEYS } from "../../lib/store/dynamodb.ts";
import {
  FUNCTION_NAMES,
  GATEWAY_CONTEXT,
  nagFindings,
  resolvedEnvironment,
  type Synthesized,
  synthesize,
} from "./harness.ts";

const WRITE_ACTIONS = [
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:DeleteItem",
  "dynamodb:BatchWriteItem",
];
const CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"];

describe("PyboxStack (gateway backend, defaults)", () => {
  let s: Synthesized;
  before(() => {
    s = synthesize({ ...GATEWAY_CONTEXT });
  });

  describe("table", () => {
    it("has the library's keys, TTL, point-in-time recovery, encryption and on-demand billing", () => {
      s.template.hasResourceProperties("AWS::DynamoDB::GlobalTable", {
        KeySchema: [
          { AttributeName: TABLE_KEYS.partition, KeyType: "HASH" },
          { AttributeName: TABLE_KEYS.sort, KeyType: "RANGE" },
        ],
        TimeToLiveSpecification: { AttributeName: TABLE_KEYS.ttl, Enabled: true },
        BillingMode: "PAY_PER_REQUEST",
        SSESpecification: { SSEEnabled: true },
        Replicas: [
          Match.objectLike({ PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true } }),
        ],
      });
    });
  });

  describe("streamed runs", () => {
    it("are served by the stream function behind a response-streaming Function URL with IAM auth", () => {
      s.template.resourceCountIs("AWS::Lambda::Url", 1);
      s.template.hasResourceProperties("AWS::Lambda::Url", {
        AuthType: "AWS_IAM",
        InvokeMode: "RESPONSE_STREAM",
        TargetFunctionArn: { "Fn::GetAtt": [s.functionId("stream"), "Arn"] },
      });
      s.template.hasOutput("StreamUrl", Match.anyValue());
      // A plain run's limits: the same function timeout as the HTTP functions, the same run caps.
      assert.equal(s.functionProps("stream").Timeout, s.functionProps("run").Timeout);
      assert.equal(
        loadConfig(resolvedEnvironment(s, "stream")).run.maxTimeoutMs,
        loadConfig(resolvedEnvironment(s, "run")).run.maxTimeoutMs,
      );
    });
  });

  describe("HTTP API", () => {
    it("is an HTTP API with a throttled, access-logged default stage", () => {
      s.template.hasResourceProperties("AWS::ApiGatewayV2::Api", { ProtocolType: "HTTP" });
      s.template.hasResourceProperties("AWS::ApiGatewayV2::Stage", {
        StageName: "$default",
        AutoDeploy: true,
        DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
        AccessLogSettings: {
          DestinationArn: Match.anyValue(),
          Format: Match.stringLikeRegexp('"requestId"'),
        },
      });
    });

    it("has one IAM-authorized route per ROUTES row, integrated with that row's function", () => {
      const routes = s.template.findResources("AWS::ApiGatewayV2::Route");
      assert.equal(Object.keys(routes).length, ROUTES.length);
      const integrations = s.template.findResources("AWS::ApiGatewayV2::Integration");
      for (const route of ROUTES) {
        const key = `${route.method} ${route.path}`;
        const found = Object.values(routes).find((r) => r.Properties.RouteKey === key);
        assert.ok(found, `no route ${key}`);
        assert.equal(found.Properties.AuthorizationType, "AWS_IAM", key);
        const target = found.Properties.Target as { "Fn::Join": [string, unknown[]] };
        const integrationRef = target["Fn::Join"][1][1] as { Ref: string };
        const integration = integrations[integrationRef.Ref];
        assert.ok(integration, `route ${key} has no integration`);
        assert.equal(integration.Properties.PayloadFormatVersion, "2.0");
        assert.deepEqual(integration.Properties.IntegrationUri, {
          "Fn::GetAtt": [s.functionId(route.function), "Arn"],
        });
      }
    });
  });

  describe("functions", () => {
    it("run Node 24 on arm64 with one ESM bundle each, source maps on, in their own log groups", () => {
      const tableId = s.stack.getLogicalId(s.stack.kernels.table.node.defaultChild as CfnResource);
      for (const name of FUNCTION_NAMES) {
        const props = s.functionProps(name);
        assert.equal(props.Runtime, "nodejs24.x", name);
        assert.deepEqual(props.Architectures, ["arm64"], name);
        assert.equal(props.Handler, "index.handler", name);
        assert.equal(props.MemorySize, 1024, name);
        const env = (props.Environment as { Variables: Record<string, unknown> }).Variables;
        assert.equal(env.NODE_OPTIONS, "--enable-source-maps", name);
        assert.equal(env.POWERTOOLS_SERVICE_NAME, "pybox", name);
        assert.equal(env.PYBOX_BACKEND, "gateway", name);
        assert.equal(env.PYBOX_GATEWAY_URL, "https://eg.internal:8888", name);
        assert.deepEqual(env.PYBOX_TABLE, { Ref: tableId }, name);
        const logGroup = (props.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
        assert.equal(s.resources[logGroup]?.Type, "AWS::Logs::LogGroup", name);
        assert.equal(s.resources[logGroup]?.Properties?.RetentionInDays, 30, name);
      }
    });

    it("stop HTTP functions within API Gateway's 30 s and keep runs and starts inside that", () => {
      for (const name of ["start", "get", "stop", "run", "files", "enqueue", "result"] as const) {
        const props = s.functionProps(name);
        assert.equal(props.Timeout, HTTP_FUNCTION_TIMEOUT.toSeconds(), name);
        const env = (props.Environment as { Variables: Record<string, string> }).Variables;
        assert.equal(env.PYBOX_MAX_RUN_TIMEOUT_MS, String(SYNC_RUN_LIMIT_MS), name);
        assert.equal(env.PYBOX_START_TIMEOUT_MS, String(SYNC_START_LIMIT_MS), name);
        assert.ok(SYNC_RUN_LIMIT_MS + 3_000 + 2_000 + 1_000 <= HTTP_FUNCTION_TIMEOUT.toMilliseconds());
        assert.ok(SYNC_START_LIMIT_MS < 29_000);
      }
      assert.equal(s.functionProps("queue").Timeout, 15 * 60);
      assert.equal(s.functionProps("reaper").Timeout, 5 * 60);
      for (const name of ["queue", "reaper"] as const) {
        const env = (s.functionProps(name).Environment as { Variables: Record<string, string> }).Variables;
        for (const variable of [
          "PYBOX_RUN_TIMEOUT_MS",
          "PYBOX_MAX_RUN_TIMEOUT_MS",
          "PYBOX_START_TIMEOUT_MS",
        ]) {
          assert.equal(env[variable], undefined, `${name} ${variable}`);
        }
      }
    });

    it("give queued runs the consumer's timeout less a minute, and the reaper the idle timeout", () => {
      const env = (name: "queue" | "enqueue" | "reaper") =>
        (s.functionProps(name).Environment as { Variables: Record<string, unknown> }).Variables;
      assert.equal(env("queue").PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS, String(14 * 60_000));
      assert.equal(env("enqueue").PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS, String(14 * 60_000));
      assert.equal(env("reaper").PYBOX_IDLE_TIMEOUT_SECONDS, "3600");
      assert.ok(env("queue").PYBOX_QUEUE_URL);
      assert.ok(env("enqueue").PYBOX_QUEUE_URL);
      assert.equal(env("queue").PYBOX_QUEUE_MAX_RECEIVES, "5", "the consumer knows the redrive limit");
      for (const name of ["start", "get", "stop", "run", "result", "reaper"] as const) {
        assert.equal(
          (s.functionProps(name).Environment as { Variables: Record<string, unknown> }).Variables
            .PYBOX_QUEUE_URL,
          undefined,
          name,
        );
      }
    });

    it("each have an environment that lib/config.ts accepts", () => {
      for (const name of FUNCTION_NAMES) {
        const config = loadConfig(resolvedEnvironment(s, name));
        assert.equal(config.backend, "gateway", name);
        assert.ok(config.run.defaultTimeoutMs <= config.run.maxTimeoutMs, name);
      }
    });

    it("are not in a VPC by default", () => {
      for (const name of FUNCTION_NAMES) assert.equal(s.functionProps(name).VpcConfig, undefined, name);
    });
  });

  describe("IAM", () => {
    it("lets result read the table and nothing more", () => {
      const actions = s.actions("result");
      assert.ok(actions.includes("dynamodb:GetItem"));
      for (const action of [...WRITE_ACTIONS, "dynamodb:Scan"]) assert.ok(!actions.includes(action), action);
      assert.ok(
        !actions.some((a) => a.startsWith("sqs:") || a.startsWith("secretsmanager:")),
        String(actions),
      );
    });

    it("lets enqueue send to the queue but not consume it or read the token", () => {
      const actions = s.actions("enqueue");
      assert.ok(actions.includes("sqs:SendMessage"));
      for (const action of CONSUME_ACTIONS) assert.ok(!actions.includes(action), action);
      assert.ok(!actions.some((a) => a.startsWith("secretsmanager:")), String(actions));
      assert.ok(actions.includes("dynamodb:PutItem"));
    });

    it("lets the consumer consume (with ChangeMessageVisibility) but not send", () => {
      const actions = s.actions("queue");
      for (const action of CONSUME_ACTIONS) assert.ok(actions.includes(action), action);
      assert.ok(!actions.includes("sqs:SendMessage"));
    });

    it("gives Scan to the reaper alone", () => {
      for (const name of FUNCTION_NAMES) {
        assert.equal(s.actions(name).includes("dynamodb:Scan"), name === "reaper", name);
      }
    });

    it("lets exactly the functions that call the gateway read its token", () => {
      for (const name of FUNCTION_NAMES) {
        const reads = s.actions(name).includes("secretsmanager:GetSecretValue");
        assert.equal(reads, !["enqueue", "result"].includes(name), name);
      }
    });

    it("uses no managed policies and no wildcard resources", () => {
      for (const [id, resource] of Object.entries(s.resources)) {
        if (resource.Type === "AWS::IAM::Role") {
          assert.equal(resource.Properties?.ManagedPolicyArns, undefined, id);
        }
        if (resource.Type === "AWS::IAM::Policy") {
          const document = resource.Properties?.PolicyDocument as
            | { Statement: Array<{ Resource: unknown }> }
            | undefined;
          const statements = document?.Statement ?? [];
          for (const statement of statements) {
            assert.ok(
              !JSON.stringify(statement.Resource).includes('"*"'),
              `${id}: ${JSON.stringify(statement)}`,
            );
          }
        }
      }
    });
  });

  describe("run queue", () => {
    it("is FIFO per kernel, deduplicated, encrypted, 1 MiB, with a FIFO dead-letter queue", () => {
      const queues = s.template.findResources("AWS::SQS::Queue");
      const runs = Object.entries(queues).find(([, q]) => q.Properties.RedrivePolicy);
      assert.ok(runs, "no queue with a redrive policy");
      const [, runQueue] = runs;
      const dlqId = (runQueue.Properties.RedrivePolicy.deadLetterTargetArn as { "Fn::GetAtt": string[] })[
        "Fn::GetAtt"
      ][0] as string;
      const dlq = queues[dlqId];
      assert.ok(dlq);
      assert.equal(runQueue.Properties.FifoQueue, true);
      assert.match(runQueue.Properties.QueueName, /\.fifo$/);
      assert.equal(runQueue.Properties.ContentBasedDeduplication, true);
      assert.equal(runQueue.Properties.DeduplicationScope, "messageGroup");
      assert.equal(runQueue.Properties.FifoThroughputLimit, "perMessageGroupId");
      assert.equal(runQueue.Properties.SqsManagedSseEnabled, true);
      assert.equal(runQueue.Properties.MaximumMessageSize, MAX_MESSAGE_BYTES);
      assert.equal(runQueue.Properties.RedrivePolicy.maxReceiveCount, MAX_RECEIVE_COUNT);
      assert.equal(dlq.Properties.FifoQueue, true);
      assert.equal(dlq.Properties.MessageRetentionPeriod, 14 * 24 * 3600);
      assert.equal(dlq.Properties.SqsManagedSseEnabled, true);
    });

    it("hides a message for at least six times the consumer's timeout", () => {
      const queue = s.template.findResources("AWS::SQS::Queue", {
        Properties: { RedrivePolicy: Match.anyValue() },
      });
      const [runQueue] = Object.values(queue);
      assert.ok(runQueue);
      assert.ok(runQueue.Properties.VisibilityTimeout >= 6 * (s.functionProps("queue").Timeout as number));
    });

    it("refuses requests without TLS", () => {
      s.template.hasResourceProperties("AWS::SQS::QueuePolicy", {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
          ]),
        },
      });
    });

    it("feeds the consumer through an event source mapping with partial batch responses", () => {
      s.template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
        FunctionName: { Ref: s.functionId("queue") },
        BatchSize: 1,
        FunctionResponseTypes: ["ReportBatchItemFailures"],
      });
      s.template.resourceCountIs("AWS::Lambda::EventSourceMapping", 1);
    });
  });

  describe("reaper", () => {
    it("runs every 5 minutes", () => {
      s.template.hasResourceProperties("AWS::Events::Rule", {
        ScheduleExpression: "rate(5 minutes)",
        State: "ENABLED",
        Targets: [Match.objectLike({ Arn: { "Fn::GetAtt": [s.functionId("reaper"), "Arn"] } })],
      });
    });
  });

  describe("gateway token", () => {
    it("is a secret the stack creates, named to the functions and output", () => {
      s.template.resourceCountIs("AWS::SecretsManager::Secret", 1);
      const secretId = Object.keys(s.template.findResources("AWS::SecretsManager::Secret"))[0];
      const env = (s.functionProps("run").Environment as { Variables: Record<string, unknown> }).Variables;
      assert.deepEqual(env.PYBOX_GATEWAY_TOKEN_SECRET, { Ref: secretId });
      s.template.hasOutput("BackendSecretArn", { Value: { Ref: secretId } });
    });
  });

  describe("outputs", () => {
    it("give the API URL, queue URL and table name", () => {
      for (const name of ["ApiUrl", "QueueUrl", "DeadLetterQueueUrl", "TableName"]) {
        s.template.hasOutput(name, Match.anyValue());
      }
    });
  });

  describe("bundles", () => {
    it("carry no ZeroMQ for the gateway backend", () => {
      for (const name of FUNCTION_NAMES) {
        assert.equal(s.importsZeromq(name), false, `${name} imports zeromq`);
        assert.equal(s.shipsZeromq(name), false, `${name} ships zeromq`);
      }
    });

    it("are what esbuild makes from infra/bundling.ts's options (what bench/bundles.ts measures)", async () => {
      const out = mkdtempSync(join(tmpdir(), "pybox-bundle-"));
      try {
        await build(esbuildOptions(join(PROJECT_ROOT, "functions", "run.ts"), out, "gateway"));
        const direct = readFileSync(join(out, "index.mjs"));
        const deployed = readFileSync(join(s.assetDir("run"), "index.mjs"));
        assert.equal(deployed.length, direct.length);
        assert.ok(deployed.equals(direct), "the deployed bundle differs from the benchmarked one");
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  });

  describe("checks", () => {
    it("has no cdk-nag AWS Solutions finding left unacknowledged", () => {
      assert.deepEqual(nagFindings(s), []);
    });

    it("has no CDK errors or warnings", () => {
      Annotations.fromStack(s.stack).hasNoError("*", Match.anyValue());
      Annotations.fromStack(s.stack).hasNoWarning("*", Match.anyValue());
    });
  });
});
