import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { App, type CfnResource } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { IMPORTS_ZEROMQ } from "../../infra/bundling.ts";
import { readSettings } from "../../infra/settings.ts";
import { PyboxStack } from "../../infra/stack.ts";
import { FUNCTION_NAMES, type FunctionName } from "../../lib/functions.ts";

/** A CloudFormation resource as it appears in the synthesized template. */
export interface TemplateResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string[];
}

/**
 * One synthesized stack and what tests ask of it. Bundling nine functions takes seconds, so each
 * test file builds its stack once (in `before`) and shares it.
 */
export interface Synthesized {
  app: App;
  stack: PyboxStack;
  template: Template;
  resources: Record<string, TemplateResource>;
  /** The logical id of a function's `AWS::Lambda::Function`. */
  functionId(name: FunctionName): string;
  /** A function's `AWS::Lambda::Function` properties. */
  functionProps(name: FunctionName): Record<string, unknown>;
  /** Every IAM action granted to a function's role, by inline policy, sorted. */
  actions(name: FunctionName): string[];
  /** The staged asset folder of a function's code (its bundle, and zeromq when shipped). */
  assetDir(name: FunctionName): string;
  /** Whether a function's bundle imports zeromq. */
  importsZeromq(name: FunctionName): boolean;
  /** Whether a function's asset carries the zeromq package. */
  shipsZeromq(name: FunctionName): boolean;
}

/** Gateway settings that synthesize: the minimum a deployment of the gateway backend needs. */
export const GATEWAY_CONTEXT = { backend: "gateway", gatewayUrl: "https://eg.internal:8888" } as const;

/** Cluster settings that synthesize: kernel image, EKS credentials and a VPC. */
export const CLUSTER_CONTEXT = {
  backend: "cluster",
  kernelEnv: { KERNEL_IMAGE: "python:3.12-slim" },
  eksCluster: "kernels",
  eksEndpoint: "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
  eksCa: "LS0tLS1CRUdJTg==",
  vpc: {
    vpcId: "vpc-0123456789abcdef0",
    availabilityZones: ["us-east-1a", "us-east-1b"],
    privateSubnetIds: ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"],
  },
} as const;

/** Builds the stack from CDK context, as `infra/app.ts` does, and synthesizes it once. */
export function synthesize(context: Record<string, unknown>): Synthesized {
  const app = new App({ context });
  const stack = new PyboxStack(app, "PyboxTest", {
    settings: readSettings(app),
    env: { account: "123456789012", region: "us-east-1" },
  });
  const template = Template.fromStack(stack);
  const resources = template.toJSON().Resources as Record<string, TemplateResource>;
  const assembly = app.synth();

  const functionId = (name: FunctionName) =>
    stack.getLogicalId(stack.functions.byName[name].function.node.defaultChild as CfnResource);
  const roleId = (name: FunctionName) =>
    stack.getLogicalId(stack.functions.byName[name].role.node.defaultChild as CfnResource);
  const functionProps = (name: FunctionName) => {
    const resource = resources[functionId(name)];
    if (!resource?.Properties) throw new Error(`no function ${name} in the template`);
    return resource.Properties;
  };
  const assetDir = (name: FunctionName) => {
    const code = functionProps(name).Code as { S3Key: string };
    const dir = join(assembly.directory, `asset.${code.S3Key.replace(/\.zip$/, "")}`);
    if (!existsSync(dir)) throw new Error(`no staged asset for ${name} at ${dir}`);
    return dir;
  };
  return {
    app,
    stack,
    template,
    resources,
    functionId,
    functionProps,
    actions: (name) => {
      const role = roleId(name);
      const actions = new Set<string>();
      for (const resource of Object.values(resources)) {
        if (resource.Type !== "AWS::IAM::Policy") continue;
        const roles = (resource.Properties?.Roles ?? []) as Array<{ Ref?: string }>;
        if (!roles.some((r) => r.Ref === role)) continue;
        const document = resource.Properties?.PolicyDocument as {
          Statement: Array<{ Effect: string; Action: string | string[] }>;
        };
        for (const statement of document.Statement) {
          if (statement.Effect !== "Allow") continue;
          for (const action of [statement.Action].flat()) actions.add(action);
        }
      }
      return [...actions].sort();
    },
    assetDir,
    importsZeromq: (name) => IMPORTS_ZEROMQ.test(readFileSync(join(assetDir(name), "index.mjs"), "utf8")),
    shipsZeromq: (name) => existsSync(join(assetDir(name), "node_modules", "zeromq", "package.json")),
  };
}

/** cdk-nag's AWS Solutions findings on the stack that no construct acknowledged, one line each. */
export function nagFindings(synthesized: Synthesized): string[] {
  const report = new AwsSolutionsChecks(synthesized.app).validateScope(synthesized.stack);
  return report.violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => `${violation.ruleName} at ${resource.constructPath}`),
  );
}

/**
 * A function's environment with CloudFormation references replaced by plausible values, as
 * Lambda would hand it to `lib/config.ts` (plus the variables Lambda sets itself).
 */
export function resolvedEnvironment(synthesized: Synthesized, name: FunctionName): NodeJS.ProcessEnv {
  const environment = synthesized.functionProps(name).Environment as {
    Variables: Record<string, unknown>;
  };
  const env: NodeJS.ProcessEnv = { AWS_REGION: "us-east-1", AWS_LAMBDA_FUNCTION_NAME: name };
  for (const [key, value] of Object.entries(environment.Variables)) {
    if (typeof value === "string") env[key] = value;
    else if (key === "PYBOX_QUEUE_URL")
      env[key] = "https://sqs.us-east-1.amazonaws.com/123456789012/runs.fifo";
    else if (key.endsWith("_SECRET"))
      env[key] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-AbCdEf";
    else env[key] = "pybox-test-table";
  }
  return env;
}

/** The function names, re-exported so test files need one import for the stack and its parts. */
export { FUNCTION_NAMES };
