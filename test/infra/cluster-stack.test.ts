import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import type { CfnResource } from "aws-cdk-lib";
import { Annotations, Match } from "aws-cdk-lib/assertions";
import { NODE_ABI } from "../../infra/bundling.ts";
import { loadConfig } from "../../lib/config.ts";
import {
  CLUSTER_CONTEXT,
  FUNCTION_NAMES,
  nagFindings,
  resolvedEnvironment,
  type Synthesized,
  synthesize,
} from "./harness.ts";

/** The functions that start, run, check or stop kernels or move their files, and so speak ZeroMQ to the pods. */
const ZEROMQ_FUNCTIONS = ["start", "get", "stop", "run", "files", "stream", "queue", "reaper"] as const;

describe("PyboxStack (cluster backend, EKS, VPC, x86_64)", () => {
  let s: Synthesized;
  before(() => {
    s = synthesize({ ...CLUSTER_CONTEXT, architecture: "x86_64", eksKubernetesGroup: "pybox-kernels" });
  });

  describe("functions", () => {
    it("run on x86_64 with the EKS cluster's coordinates and the kernel image", () => {
      for (const name of FUNCTION_NAMES) {
        const props = s.functionProps(name);
        assert.deepEqual(props.Architectures, ["x86_64"], name);
        const env = (props.Environment as { Variables: Record<string, unknown> }).Variables;
        assert.equal(env.PYBOX_BACKEND, "cluster", name);
        assert.equal(env.PYBOX_EKS_CLUSTER, CLUSTER_CONTEXT.eksCluster, name);
        assert.equal(env.PYBOX_EKS_ENDPOINT, CLUSTER_CONTEXT.eksEndpoint, name);
        assert.equal(env.PYBOX_EKS_CA, CLUSTER_CONTEXT.eksCa, name);
        assert.equal(env.PYBOX_CLUSTER_NAMESPACE, "pybox-kernels", name);
        assert.deepEqual(JSON.parse(String(env.PYBOX_KERNEL_ENV)), CLUSTER_CONTEXT.kernelEnv, name);
        assert.equal(env.PYBOX_GATEWAY_URL, undefined, name);
      }
    });

    it("each have an environment that lib/config.ts accepts", () => {
      for (const name of FUNCTION_NAMES) {
        const config = loadConfig(resolvedEnvironment(s, name));
        assert.equal(config.cluster?.auth.kind, "eks", name);
        assert.equal(config.cluster?.image, CLUSTER_CONTEXT.kernelEnv.KERNEL_IMAGE, name);
      }
    });

    it("sit in the VPC's private subnets behind a security group the stack makes", () => {
      const groups = s.template.findResources("AWS::EC2::SecurityGroup");
      const [groupId] = Object.keys(groups);
      assert.equal(Object.keys(groups).length, 1);
      assert.ok(groupId);
      for (const name of FUNCTION_NAMES) {
        assert.deepEqual(
          s.functionProps(name).VpcConfig,
          {
            SubnetIds: [...CLUSTER_CONTEXT.vpc.privateSubnetIds],
            SecurityGroupIds: [{ "Fn::GetAtt": [groupId, "GroupId"] }],
          },
          name,
        );
      }
      s.template.hasResourceProperties("AWS::EC2::SecurityGroup", {
        VpcId: CLUSTER_CONTEXT.vpc.vpcId,
        SecurityGroupEgress: [Match.objectLike({ CidrIp: "0.0.0.0/0" })],
      });
      s.template.hasOutput("FunctionsSecurityGroupId", { Value: { "Fn::GetAtt": [groupId, "GroupId"] } });
    });

    it("never let the controller cull a pod before the reaper's idle time and one pass", () => {
      for (const name of FUNCTION_NAMES) {
        const env = (s.functionProps(name).Environment as { Variables: Record<string, unknown> }).Variables;
        assert.equal(env.PYBOX_CLUSTER_IDLE_TIMEOUT_SECONDS, String(60 * 60 + 5 * 60), name);
      }
    });

    it("may attach network interfaces (the AWS-managed VPC access policy)", () => {
      for (const [id, resource] of Object.entries(s.resources)) {
        if (resource.Type !== "AWS::IAM::Role") continue;
        assert.match(
          JSON.stringify(resource.Properties?.ManagedPolicyArns),
          /AWSLambdaVPCAccessExecutionRole/,
          id,
        );
      }
    });

    it("need no secret: the EKS token is signed in-process", () => {
      s.template.resourceCountIs("AWS::SecretsManager::Secret", 0);
      for (const name of FUNCTION_NAMES) {
        assert.ok(!s.actions(name).some((a) => a.startsWith("secretsmanager:")), name);
      }
    });
  });

  describe("EKS access entries", () => {
    it("map each function that talks to the cluster into the operator's Kubernetes group", () => {
      const entries = Object.values(s.template.findResources("AWS::EKS::AccessEntry"));
      assert.equal(entries.length, ZEROMQ_FUNCTIONS.length);
      for (const entry of entries) {
        assert.equal(entry.Properties.ClusterName, CLUSTER_CONTEXT.eksCluster);
        assert.deepEqual(entry.Properties.KubernetesGroups, ["pybox-kernels"]);
      }
      const principals = entries.map((e) => JSON.stringify(e.Properties.PrincipalArn));
      for (const name of ZEROMQ_FUNCTIONS) {
        const role = s.stack.getLogicalId(
          s.stack.functions.byName[name].role.node.defaultChild as CfnResource,
        );
        assert.ok(principals.includes(JSON.stringify({ "Fn::GetAtt": [role, "Arn"] })), name);
      }
    });
  });

  describe("zeromq in the assets", () => {
    it("is shipped by exactly the functions whose bundle imports it", () => {
      for (const name of FUNCTION_NAMES) {
        assert.equal(s.shipsZeromq(name), s.importsZeromq(name), name);
      }
    });

    it("is imported and shipped by every function that speaks ZeroMQ", () => {
      for (const name of ZEROMQ_FUNCTIONS) {
        assert.ok(s.importsZeromq(name), `${name} does not import zeromq`);
        assert.ok(s.shipsZeromq(name), `${name} does not ship zeromq`);
      }
    });

    it("is absent from enqueue and result, which never reach a kernel", () => {
      assert.equal(s.shipsZeromq("enqueue"), false);
      assert.equal(s.shipsZeromq("result"), false);
    });

    it("holds one addon (linux x64, glibc, the N-API build's ABI), its trimmed manifest, and no build-time files", () => {
      const root = join(s.assetDir("run"), "node_modules");
      assert.deepEqual(readdirSync(root).sort(), ["cmake-ts", "zeromq"]);
      assert.deepEqual(readdirSync(join(root, "zeromq", "build", "linux")), ["x64"]);
      assert.deepEqual(readdirSync(join(root, "zeromq", "build", "linux", "x64", "node")), [
        `glibc-${NODE_ABI}-Release`,
      ]);
      const manifest = JSON.parse(
        readFileSync(join(root, "zeromq", "build", "manifest.json"), "utf8"),
      ) as Record<string, string>;
      assert.deepEqual(Object.values(manifest), [`linux/x64/node/glibc-${NODE_ABI}-Release/addon.node`]);
      assert.deepEqual(readdirSync(join(root, "cmake-ts", "build")), ["loader.js"]);
      const lib = readdirSync(join(root, "zeromq", "lib"), { recursive: true }).map(String);
      assert.ok(lib.includes("index.js"));
      assert.ok(
        !lib.some((f) => f.endsWith(".d.ts") || f.endsWith(".map") || f.startsWith("ts3.7")),
        String(lib),
      );
    });

    it("loads from the asset folder alone, with nothing above it to fall back on", () => {
      // Prepare: the asset lives in a temporary cloud assembly, outside the project's node_modules.
      const dir = s.assetDir("run");
      assert.ok(!dir.startsWith(process.cwd()));

      // Act
      const out = execFileSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          "const z = await import('zeromq'); const d = new z.Dealer(); d.close(); console.log(typeof z.Dealer, z.version);",
        ],
        { cwd: dir, encoding: "utf8" },
      );

      // Assess
      assert.match(out, /^function \d+\.\d+\.\d+/);
    });

    it("lets the whole bundle import in a fresh Node process with the function's environment", () => {
      const dir = s.assetDir("run");
      const out = execFileSync(
        process.execPath,
        [
          "--enable-source-maps",
          "--input-type=module",
          "-e",
          "const m = await import('./index.mjs'); console.log(typeof m.handler);",
        ],
        { cwd: dir, encoding: "utf8", env: { PATH: process.env.PATH, ...resolvedEnvironment(s, "run") } },
      );
      assert.equal(out.trim(), "function");
    });
  });

  describe("checks", () => {
    it("has no cdk-nag AWS Solutions finding left unacknowledged", () => {
      assert.deepEqual(nagFindings(s), []);
    });

    it("has no CDK errors or warnings (imported subnets without route tables are acknowledged)", () => {
      Annotations.fromStack(s.stack).hasNoError("*", Match.anyValue());
      Annotations.fromStack(s.stack).hasNoWarning("*", Match.anyValue());
    });
  });

  describe("with a kubeconfig secret instead of EKS", () => {
    let k: Synthesized;
    before(() => {
      const { eksCluster: _c, eksEndpoint: _e, eksCa: _a, ...rest } = CLUSTER_CONTEXT;
      k = synthesize({
        ...rest,
        architecture: "x86_64",
        kubeconfigSecretArn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:pybox-kubeconfig-AbCdEf",
      });
    });

    it("names the secret to every function and lets only the kernel-facing ones read it", () => {
      const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pybox-kubeconfig-AbCdEf";
      k.template.resourceCountIs("AWS::SecretsManager::Secret", 0);
      k.template.resourceCountIs("AWS::EKS::AccessEntry", 0);
      for (const name of FUNCTION_NAMES) {
        const env = (k.functionProps(name).Environment as { Variables: Record<string, unknown> }).Variables;
        assert.equal(env.PYBOX_KUBECONFIG_SECRET, arn, name);
        assert.equal(env.PYBOX_EKS_CLUSTER, undefined, name);
        const reads = k.actions(name).includes("secretsmanager:GetSecretValue");
        assert.equal(reads, (ZEROMQ_FUNCTIONS as readonly string[]).includes(name), name);
        assert.equal(loadConfig(resolvedEnvironment(k, name)).cluster?.auth.kind, "kubeconfig-secret", name);
      }
    });

    it("has no cdk-nag finding left unacknowledged", () => {
      assert.deepEqual(nagFindings(k), []);
    });
  });
});
