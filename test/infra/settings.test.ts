import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { App } from "aws-cdk-lib";
import { parseSettings, readSettings, SettingsError } from "../../infra/settings.ts";
import { CLUSTER_CONTEXT, GATEWAY_CONTEXT } from "./harness.ts";

/** Asserts `act` throws a SettingsError naming `key`, with a message matching `message`. */
function assertSettingsError(act: () => unknown, key: string, message: RegExp): void {
  assert.throws(act, (error: unknown) => {
    assert.ok(error instanceof SettingsError, `expected SettingsError, got ${String(error)}`);
    assert.ok(error.message.includes(`\`${key}\``), `message does not name ${key}: ${error.message}`);
    assert.match(error.message, message);
    return true;
  });
}

describe("settings", () => {
  describe("parseSettings", () => {
    it("applies the defaults to a minimal gateway context", () => {
      // Act
      const settings = parseSettings({ ...GATEWAY_CONTEXT });

      // Assess
      assert.deepEqual(settings, {
        backend: "gateway",
        architecture: "arm64",
        memoryMb: 1024,
        authorizer: { kind: "iam" },
        kernelEnv: {},
        idleTimeoutMinutes: 60,
        pool: { size: 0, maxAgeMinutes: 30 },
        reaperRateMinutes: 5,
        consumerTimeoutMinutes: 15,
        queueBatchSize: 1,
        logRetention: 30,
        throttle: { rateLimit: 50, burstLimit: 100 },
        tracing: false,
        gateway: { url: "https://eg.internal:8888", createCwd: false, sharedHost: "refuse" },
      });
    });

    it("accepts strings as `-c key=value` gives them, JSON included", () => {
      const settings = parseSettings({
        ...GATEWAY_CONTEXT,
        gatewayUrl: "http://10.0.0.5:8888/",
        kernelEnv: '{"KERNEL_UID": 1000, "DEBUG": true}',
        queueBatchSize: "10",
        throttle: '{"rate": "5"}',
        authorizer: "jwt",
        jwtIssuer: "https://idp.example.com",
        jwtAudience: '["a", "b"]',
      });
      assert.equal(settings.gateway?.url, "http://10.0.0.5:8888");
      assert.deepEqual(settings.kernelEnv, { KERNEL_UID: "1000", DEBUG: "true" });
      assert.equal(settings.queueBatchSize, 10);
      assert.deepEqual(settings.throttle, { rateLimit: 5, burstLimit: 100 });
      assert.deepEqual(settings.authorizer, {
        kind: "jwt",
        issuer: "https://idp.example.com",
        audience: ["a", "b"],
      });
    });

    it("reads a cluster context with EKS credentials", () => {
      const settings = parseSettings({ ...CLUSTER_CONTEXT, clusterNamespace: "kernels" });
      assert.deepEqual(settings.cluster, {
        namespace: "kernels",
        auth: {
          kind: "eks",
          cluster: CLUSTER_CONTEXT.eksCluster,
          endpoint: CLUSTER_CONTEXT.eksEndpoint,
          caData: CLUSTER_CONTEXT.eksCa,
        },
      });
      assert.equal(settings.gateway, undefined);
    });

    it("defaults to the gateway backend, its URL left to a deploy-time parameter", () => {
      const settings = parseSettings({});
      assert.equal(settings.backend, "gateway");
      assert.equal(settings.gateway?.url, undefined);
    });

    it("refuses the local backend with the reason", () => {
      assertSettingsError(
        () => parseSettings({ backend: "local" }),
        "backend",
        /local runs kernels as processes.*Lambda cannot/,
      );
    });

    it("takes gatewayUrl only as an http(s) URL", () => {
      assertSettingsError(
        () => parseSettings({ backend: "gateway", gatewayUrl: "ftp://x" }),
        "gatewayUrl",
        /http\(s\) URL/,
      );
    });

    it("refuses a partial secret ARN", () => {
      assertSettingsError(
        () =>
          parseSettings({
            ...GATEWAY_CONTEXT,
            gatewayTokenSecretArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:token",
          }),
        "gatewayTokenSecretArn",
        /complete Secrets Manager secret ARN/,
      );
    });

    it("takes gatewayCreateCwd as a boolean, from JSON or from -c text, and refuses anything else", () => {
      assert.equal(parseSettings({ ...GATEWAY_CONTEXT }).gateway?.createCwd, false);
      assert.equal(parseSettings({ ...GATEWAY_CONTEXT, gatewayCreateCwd: true }).gateway?.createCwd, true);
      assert.equal(parseSettings({ ...GATEWAY_CONTEXT, gatewayCreateCwd: "true" }).gateway?.createCwd, true);
      assert.equal(
        parseSettings({ ...GATEWAY_CONTEXT, gatewayCreateCwd: "false" }).gateway?.createCwd,
        false,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, gatewayCreateCwd: "yes" }),
        "gatewayCreateCwd",
        /true or false/,
      );
      assertSettingsError(
        () => parseSettings({ ...CLUSTER_CONTEXT, gatewayCreateCwd: true }),
        "gatewayCreateCwd",
        /backend is cluster/,
      );
    });

    it("refuses keys of the other backend", () => {
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, eksCluster: "k" }),
        "eksCluster",
        /backend is gateway/,
      );
      assertSettingsError(
        () => parseSettings({ ...CLUSTER_CONTEXT, gatewayUrl: "https://eg" }),
        "gatewayUrl",
        /backend is cluster/,
      );
    });

    it("requires KERNEL_IMAGE, a VPC and one way to the cluster for the cluster backend", () => {
      assertSettingsError(
        () => parseSettings({ ...CLUSTER_CONTEXT, kernelEnv: {} }),
        "kernelEnv",
        /KERNEL_IMAGE/,
      );
      const { vpc: _vpc, ...withoutVpc } = CLUSTER_CONTEXT;
      assertSettingsError(() => parseSettings(withoutVpc), "vpc", /ZeroMQ straight to the kernel pods/);
      const { eksCluster: _c, eksEndpoint: _e, eksCa: _a, ...withoutAuth } = CLUSTER_CONTEXT;
      assertSettingsError(
        () => parseSettings(withoutAuth),
        "eksCluster",
        /or kubeconfigSecretArn is required/,
      );
      assertSettingsError(
        () =>
          parseSettings({
            ...CLUSTER_CONTEXT,
            kubeconfigSecretArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf",
          }),
        "kubeconfigSecretArn",
        /choose one/,
      );
      assertSettingsError(
        () => parseSettings({ ...CLUSTER_CONTEXT, eksEndpoint: undefined }),
        "eksEndpoint",
        /required with eksCluster/,
      );
    });

    it("requires issuer and audience for the JWT authorizer, and neither without it", () => {
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, authorizer: "jwt" }),
        "jwtIssuer",
        /required/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, authorizer: "jwt", jwtIssuer: "https://idp" }),
        "jwtAudience",
        /required/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, jwtIssuer: "https://idp" }),
        "jwtIssuer",
        /authorizer is not jwt/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, authorizer: "cognito" }),
        "authorizer",
        /iam or jwt/,
      );
    });

    it("checks numbers against their ranges", () => {
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, consumerTimeoutMinutes: "16" }),
        "consumerTimeoutMinutes",
        /at most 15/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, queueBatchSize: 11 }),
        "queueBatchSize",
        /at most 10/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, reaperRate: "often" }),
        "reaperRate",
        /whole number/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, logRetentionDays: 31 }),
        "logRetentionDays",
        /one of CloudWatch's retention periods/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, throttle: '{"rate": 0}' }),
        "throttle",
        /at least 1.*rate/,
      );
    });

    it("checks the shapes of architecture, kernelEnv and vpc", () => {
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, architecture: "x64" }),
        "architecture",
        /arm64 or x86_64/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, kernelEnv: "[1]" }),
        "kernelEnv",
        /JSON object/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, kernelEnv: { BIG: "x".repeat(3000) } }),
        "kernelEnv",
        /4 KB/,
      );
      assertSettingsError(
        () => parseSettings({ ...GATEWAY_CONTEXT, vpc: { vpcId: "vpc-1" } }),
        "vpc",
        /availabilityZones/,
      );
      assertSettingsError(
        () =>
          parseSettings({
            ...GATEWAY_CONTEXT,
            vpc: { vpcId: "vpc-1", availabilityZones: ["a", "b"], privateSubnetIds: ["subnet-1"] },
          }),
        "vpc",
        /multiple of availabilityZones/,
      );
    });
  });

  describe("readSettings", () => {
    it("reads the keys from the app's context", () => {
      const app = new App({ context: { ...GATEWAY_CONTEXT, reaperRate: "15" } });
      assert.equal(readSettings(app).reaperRateMinutes, 15);
    });

    it("fails with a message naming the key", () => {
      const app = new App({ context: { backend: "gateway", gatewayUrl: "not a url" } });
      assertSettingsError(() => readSettings(app), "gatewayUrl", /http\(s\) URL/);
    });
  });
});
