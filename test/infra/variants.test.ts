import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { Annotations, Match } from "aws-cdk-lib/assertions";
import { loadConfig } from "../../lib/config.ts";
import { ROUTES } from "../../lib/http/routes.ts";
import {
  CLUSTER_CONTEXT,
  FUNCTION_NAMES,
  GATEWAY_CONTEXT,
  nagFindings,
  resolvedEnvironment,
  type Synthesized,
  synthesize,
} from "./harness.ts";

const TOKEN_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:eg-token-AbCdEf";

describe("PyboxStack (gateway backend, JWT, existing secret, VPC, tuned limits)", () => {
  let s: Synthesized;
  before(() => {
    // Values as `-c key=value` gives them: strings, JSON in strings.
    s = synthesize({
      ...GATEWAY_CONTEXT,
      authorizer: "jwt",
      jwtIssuer: "https://idp.example.com/",
      jwtAudience: "pybox-api,pybox-agents",
      gatewayTokenSecretArn: TOKEN_ARN,
      vpc: JSON.stringify({
        vpcId: "vpc-0123456789abcdef0",
        availabilityZones: ["eu-west-1a"],
        privateSubnetIds: ["subnet-0aaaaaaaaaaaaaaaa"],
        securityGroupIds: ["sg-0123456789abcdef0"],
      }),
      consumerTimeoutMinutes: "10",
      queueBatchSize: "5",
      reaperRate: "10",
      idleTimeoutMinutes: "30",
      logRetentionDays: "7",
      memoryMb: "2048",
      throttle: '{"rate": 20, "burst": 40}',
    });
  });

  it("authorizes every route with the JWT authorizer for the issuer and audiences", () => {
    s.template.hasResourceProperties("AWS::ApiGatewayV2::Authorizer", {
      AuthorizerType: "JWT",
      IdentitySource: ["$request.header.Authorization"],
      JwtConfiguration: { Issuer: "https://idp.example.com/", Audience: ["pybox-api", "pybox-agents"] },
    });
    const [authorizerId] = Object.keys(s.template.findResources("AWS::ApiGatewayV2::Authorizer"));
    const routes = Object.values(s.template.findResources("AWS::ApiGatewayV2::Route"));
    assert.equal(routes.length, ROUTES.length);
    for (const route of routes) {
      assert.equal(route.Properties.AuthorizationType, "JWT", route.Properties.RouteKey);
      assert.deepEqual(route.Properties.AuthorizerId, { Ref: authorizerId }, route.Properties.RouteKey);
    }
  });

  it("logs the JWT subject as the caller", () => {
    s.template.hasResourceProperties("AWS::ApiGatewayV2::Stage", {
      AccessLogSettings: { Format: Match.stringLikeRegexp("authorizer.claims.sub") },
      DefaultRouteSettings: { ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 },
    });
  });

  it("uses the operator's token secret instead of making one", () => {
    s.template.resourceCountIs("AWS::SecretsManager::Secret", 0);
    const env = (s.functionProps("start").Environment as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env.PYBOX_GATEWAY_TOKEN_SECRET, TOKEN_ARN);
    const policies = Object.values(s.template.findResources("AWS::IAM::Policy"));
    assert.ok(policies.some((p) => JSON.stringify(p).includes(TOKEN_ARN)));
  });

  it("puts the functions in the given subnets and security groups", () => {
    s.template.resourceCountIs("AWS::EC2::SecurityGroup", 0);
    for (const name of FUNCTION_NAMES) {
      assert.deepEqual(s.functionProps(name).VpcConfig, {
        SubnetIds: ["subnet-0aaaaaaaaaaaaaaaa"],
        SecurityGroupIds: ["sg-0123456789abcdef0"],
      });
      assert.equal(s.functionProps(name).MemorySize, 2048);
    }
  });

  it("derives the consumer's timeout, visibility, batch size and run limit from consumerTimeoutMinutes", () => {
    assert.equal(s.functionProps("queue").Timeout, 600);
    const env = (s.functionProps("queue").Environment as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env.PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS, String(9 * 60_000));
    s.template.hasResourceProperties("AWS::SQS::Queue", {
      RedrivePolicy: Match.anyValue(),
      VisibilityTimeout: 3600,
    });
    s.template.hasResourceProperties("AWS::Lambda::EventSourceMapping", { BatchSize: 5 });
  });

  it("runs the reaper at the given rate with the given idle timeout", () => {
    s.template.hasResourceProperties("AWS::Events::Rule", { ScheduleExpression: "rate(10 minutes)" });
    const env = (s.functionProps("reaper").Environment as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env.PYBOX_IDLE_TIMEOUT_SECONDS, "1800");
  });

  it("keeps logs for the given retention", () => {
    const groups = Object.values(s.template.findResources("AWS::Logs::LogGroup"));
    assert.equal(groups.length, FUNCTION_NAMES.length + 1);
    for (const group of groups) assert.equal(group.Properties.RetentionInDays, 7);
  });

  it("has no cdk-nag finding left unacknowledged and no CDK warnings", () => {
    assert.deepEqual(nagFindings(s), []);
    Annotations.fromStack(s.stack).hasNoError("*", Match.anyValue());
    Annotations.fromStack(s.stack).hasNoWarning("*", Match.anyValue());
  });
});

describe("PyboxStack with no context at all (a plain `cdk synth` from a clean clone)", () => {
  let s: Synthesized;
  before(() => {
    s = synthesize({});
  });

  it("synthesizes the gateway backend and asks for the gateway URL at deploy time", () => {
    const parameters = s.template.toJSON().Parameters as Record<
      string,
      { Type: string; AllowedPattern?: string }
    >;
    assert.equal(parameters.GatewayUrl?.Type, "String");
    assert.ok(parameters.GatewayUrl?.AllowedPattern);
    const env = (s.functionProps("run").Environment as { Variables: Record<string, unknown> }).Variables;
    assert.deepEqual(env.PYBOX_GATEWAY_URL, { Ref: "GatewayUrl" });
    assert.equal(env.PYBOX_BACKEND, "gateway");
  });

  it("has no cdk-nag finding left unacknowledged", () => {
    assert.deepEqual(nagFindings(s), []);
  });
});

describe("PyboxStack with a warm pool", () => {
  let s: Synthesized;
  before(() => {
    s = synthesize({ ...GATEWAY_CONTEXT, poolSize: "4", poolMaxAgeMinutes: "20" });
  });

  it("gives every function that calls the backend the pool's size and age, read by lib/config.ts as set", () => {
    for (const name of ["start", "run", "queue", "reaper"] as const) {
      const config = loadConfig(resolvedEnvironment(s, name));
      assert.deepEqual(config.pool, { size: 4, maxAgeMs: 20 * 60_000 }, name);
    }
  });

  it("lets the functions that start kernels ask for a refill through the queue, and no other", () => {
    for (const name of FUNCTION_NAMES) {
      const sends = s.actions(name).includes("sqs:SendMessage");
      assert.equal(sends, ["start", "run", "stream", "queue", "enqueue"].includes(name), name);
    }
  });

  it("has no cdk-nag finding left unacknowledged", () => {
    assert.deepEqual(nagFindings(s), []);
  });
});

describe("gateway tenancy setting", () => {
  it("passes gatewaySharedHost=allow to the functions, and leaves the refusal as the default", () => {
    const allowed = synthesize({ ...GATEWAY_CONTEXT, gatewaySharedHost: "allow" });
    assert.equal(loadConfig(resolvedEnvironment(allowed, "start")).gateway?.sharedHost, "allow");
    const plain = synthesize(GATEWAY_CONTEXT);
    assert.equal(loadConfig(resolvedEnvironment(plain, "start")).gateway?.sharedHost, "refuse");
  });
});

describe("warm pool settings", () => {
  it("refuse a cluster pool that outlives the controller's idle culling", () => {
    assert.throws(
      () =>
        synthesize({ ...CLUSTER_CONTEXT, poolSize: "2", poolMaxAgeMinutes: "60", idleTimeoutMinutes: "60" }),
      /poolMaxAgeMinutes.*less than idleTimeoutMinutes/,
    );
  });
});

describe("PyboxStack with tracing", () => {
  let traced: Synthesized;
  before(() => {
    traced = synthesize({ ...GATEWAY_CONTEXT, tracing: "true" });
  });

  it("turns on active tracing and PYBOX_TRACING on every function, and bundles the tracer", () => {
    for (const name of FUNCTION_NAMES) {
      assert.deepEqual(traced.functionProps(name).TracingConfig, { Mode: "Active" }, name);
      assert.equal(loadConfig(resolvedEnvironment(traced, name)).tracing, true, name);
    }
    assert.match(readFileSync(join(traced.assetDir("run"), "index.mjs"), "utf8"), /aws-xray-sdk|AWSXRay/);
  });

  it("leaves the tracer out of the bundles of a deployment without tracing", () => {
    const plain = synthesize(GATEWAY_CONTEXT);
    assert.equal(plain.functionProps("run").TracingConfig, undefined);
    assert.doesNotMatch(
      readFileSync(join(plain.assetDir("run"), "index.mjs"), "utf8"),
      /aws-xray-sdk|AWSXRay/,
    );
  });

  it("has no cdk-nag finding left unacknowledged", () => {
    assert.deepEqual(nagFindings(traced), []);
  });
});
