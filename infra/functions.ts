import { join } from "node:path";
import { Annotations, Duration, Validations } from "aws-cdk-lib";
import type { ISecurityGroup, IVpc } from "aws-cdk-lib/aws-ec2";
import { SecurityGroup, SubnetType, Vpc } from "aws-cdk-lib/aws-ec2";
import { ManagedPolicy, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Architecture, Tracing } from "aws-cdk-lib/aws-lambda";
import { NodejsFunction } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup } from "aws-cdk-lib/aws-logs";
import type { ISecret } from "aws-cdk-lib/aws-secretsmanager";
import { Construct } from "constructs";
import { HTTP_INVOCATION_TIMEOUT_MS, SYNC_RUN_LIMIT_MS, SYNC_START_LIMIT_MS } from "../lib/config.ts";
import { FUNCTION_NAMES, FUNCTIONS, type FunctionName, type Trigger } from "../lib/functions.ts";
import { LAMBDA_RUNTIME, lambdaBundling, NODE_MAJOR, PROJECT_ROOT } from "./bundling.ts";
import type { Settings, VpcSettings } from "./settings.ts";
import type { KernelTable } from "./table.ts";

/** The HTTP functions' timeout: under API Gateway's 30 s, as in `npm start` (see `lib/config.ts`). */
export const HTTP_FUNCTION_TIMEOUT = Duration.millis(HTTP_INVOCATION_TIMEOUT_MS);

/** Queued runs stop this long before the consumer's own timeout, to store their result. */
export const ASYNC_RUN_MARGIN = Duration.minutes(1);

/** `PYBOX_RECORD_TTL_SECONDS`'s default in `lib/config.ts`: a week. */
const DEFAULT_RECORD_TTL_SECONDS = 7 * 24 * 3600;

/** The reaper's timeout: enough to stop a few hundred idle kernels in one pass. */
export const REAPER_TIMEOUT = Duration.minutes(5);

/** How much of the table a function may touch. */
export type TableAccess = "read" | "read-write" | "read-write-scan";

const READ_ACTIONS = [
  "dynamodb:GetItem",
  "dynamodb:BatchGetItem",
  "dynamodb:Query",
  "dynamodb:ConditionCheckItem",
];
const WRITE_ACTIONS = [
  "dynamodb:PutItem",
  "dynamodb:UpdateItem",
  "dynamodb:DeleteItem",
  "dynamodb:BatchWriteItem",
];

const TABLE_ACTIONS: Record<TableAccess, string[]> = {
  read: READ_ACTIONS,
  "read-write": [...READ_ACTIONS, ...WRITE_ACTIONS],
  "read-write-scan": [...READ_ACTIONS, ...WRITE_ACTIONS, "dynamodb:Scan"],
};

/** What one function is in the stack: its purpose, its time limit, and what it may touch. */
interface StackFunctionSpec {
  description: string;
  timeout: Duration;
  table: TableAccess;
  /** Talks to the kernel backend, so reads its credentials secret. */
  backend: boolean;
}

/** Each function of the catalogue, with the time limit its trigger allows. */
function specs(settings: Settings): Record<FunctionName, StackFunctionSpec> {
  const timeouts: Record<Trigger, Duration> = {
    http: HTTP_FUNCTION_TIMEOUT,
    // A streamed run has a plain run's limits (the same sync run timeout), so the same time.
    url: HTTP_FUNCTION_TIMEOUT,
    queue: Duration.minutes(settings.consumerTimeoutMinutes),
    schedule: REAPER_TIMEOUT,
  };
  const all: Partial<Record<FunctionName, StackFunctionSpec>> = {};
  for (const name of FUNCTION_NAMES) {
    const { description, trigger, table, runtime } = FUNCTIONS[name];
    all[name] = { description, timeout: timeouts[trigger], table, backend: runtime === "kernels" };
  }
  return all as Record<FunctionName, StackFunctionSpec>;
}

/** Props of {@link PyboxFunction}. */
export interface PyboxFunctionProps {
  name: FunctionName;
  settings: Settings;
  description: string;
  timeout: Duration;
  environment: Record<string, string>;
  network?: { vpc: IVpc; securityGroups: ISecurityGroup[] };
}

/**
 * One Lambda function as the product runs it: Node 24, the configured architecture, one ESM
 * bundle, its own log group with retention, and its own role that starts with nothing but writing
 * to that log group. Access is added with the `bind*` methods, each of which sets the environment
 * variable *and* grants the access, so the two cannot drift apart.
 */
export class PyboxFunction extends Construct {
  readonly function: NodejsFunction;
  readonly role: Role;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: PyboxFunctionProps) {
    super(scope, id);
    const { settings } = props;
    this.logGroup = new LogGroup(this, "Logs", { retention: settings.logRetention });
    this.role = new Role(this, "Role", {
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: `pybox ${props.name} function`,
    });
    this.logGroup.grantWrite(this.role);
    if (props.network) {
      this.role.addManagedPolicy(
        ManagedPolicy.fromAwsManagedPolicyName("service-role/AWSLambdaVPCAccessExecutionRole"),
      );
      Validations.of(this.role).acknowledge({
        id: "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]",
        reason:
          "Lambda needs this AWS-managed policy to attach its network interfaces in the VPC; its EC2 actions cannot be scoped to resources, and AWS keeps it current.",
      });
    }
    this.function = new NodejsFunction(this, "Function", {
      entry: join(PROJECT_ROOT, "functions", `${props.name}.ts`),
      handler: "handler",
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, "package-lock.json"),
      runtime: LAMBDA_RUNTIME,
      architecture: settings.architecture === "arm64" ? Architecture.ARM_64 : Architecture.X86_64,
      memorySize: settings.memoryMb,
      timeout: props.timeout,
      description: `pybox: ${props.description}`,
      role: this.role,
      logGroup: this.logGroup,
      environment: props.environment,
      bundling: lambdaBundling(settings.backend, settings.architecture, settings.tracing),
      ...(settings.tracing ? { tracing: Tracing.ACTIVE } : {}),
      ...(props.network
        ? {
            vpc: props.network.vpc,
            vpcSubnets: { subnetType: SubnetType.PRIVATE_WITH_EGRESS },
            securityGroups: props.network.securityGroups,
          }
        : {}),
    });
    if (settings.tracing) {
      Validations.of(this.role).acknowledge({
        id: "AwsSolutions-IAM5[Resource::*]",
        reason:
          "Active tracing grants xray:PutTraceSegments and xray:PutTelemetryRecords, which X-Ray does not scope to resources.",
      });
    }
    Validations.of(this.function).acknowledge({
      id: "AwsSolutions-L1",
      reason: `Node ${NODE_MAJOR} is the runtime this product is built, bundled (target node${NODE_MAJOR}) and tested on (npm test runs on the same Node ${NODE_MAJOR} it installs); it is supported by Lambda, and moving to a newer runtime is a deliberate upgrade with its own test run, not a silent default.`,
    });
  }

  /** Sets `PYBOX_TABLE` and grants exactly the DynamoDB actions of `access` on the table. */
  bindTable(table: KernelTable, access: TableAccess): void {
    this.function.addEnvironment("PYBOX_TABLE", table.table.tableName);
    table.table.grant(this.function, ...TABLE_ACTIONS[access]);
  }

  /** Sets `variable` to the secret's ARN and lets the function read that one secret. */
  bindSecret(variable: string, secret: ISecret): void {
    this.function.addEnvironment(variable, secret.secretArn);
    secret.grantRead(this.function);
  }

  /** Sets an environment variable that carries no access (a URL, a limit). */
  setEnvironment(variable: string, value: string): void {
    this.function.addEnvironment(variable, value);
  }
}

/** Props of {@link KernelFunctions}. */
export interface KernelFunctionsProps {
  settings: Settings;
  table: KernelTable;
  /** The backend's credentials secret (gateway token or kubeconfig), when there is one. */
  backendSecret?: { variable: string; secret: ISecret };
}

/**
 * The eight functions, their shared configuration (backend, limits, kernel env) and their
 * per-function access. The queue and the reaper schedule bind to these in their own constructs.
 */
export class KernelFunctions extends Construct {
  readonly byName: Record<FunctionName, PyboxFunction>;
  /** The security group of the functions, when they run in a VPC. */
  readonly securityGroups: ISecurityGroup[];

  constructor(scope: Construct, id: string, props: KernelFunctionsProps) {
    super(scope, id);
    const { settings } = props;
    const network = settings.vpc ? this.network(settings.vpc) : undefined;
    this.securityGroups = network?.securityGroups ?? [];
    const all = specs(settings);
    const made: Partial<Record<FunctionName, PyboxFunction>> = {};
    for (const name of FUNCTION_NAMES) {
      const spec = all[name];
      const fn = new PyboxFunction(this, capitalise(name), {
        name,
        settings,
        description: spec.description,
        timeout: spec.timeout,
        environment: sharedEnvironment(settings, name),
        ...(network ? { network } : {}),
      });
      fn.bindTable(props.table, spec.table);
      if (props.backendSecret) {
        const { variable, secret } = props.backendSecret;
        // Every function's config names the secret (it is validated at cold start); only those
        // that talk to the backend may read it.
        if (spec.backend) fn.bindSecret(variable, secret);
        else fn.setEnvironment(variable, secret.secretArn);
      }
      made[name] = fn;
    }
    this.byName = made as Record<FunctionName, PyboxFunction>;
  }

  /** The existing VPC, imported from ids (no lookup), and the functions' security groups. */
  private network(vpc: VpcSettings): { vpc: IVpc; securityGroups: ISecurityGroup[] } {
    const imported = Vpc.fromVpcAttributes(this, "Vpc", {
      vpcId: vpc.vpcId,
      availabilityZones: vpc.availabilityZones,
      privateSubnetIds: vpc.privateSubnetIds,
    });
    // The functions only place their network interfaces in these subnets; no route table is read.
    for (const subnet of imported.privateSubnets) {
      Annotations.of(subnet).acknowledgeWarning(
        "@aws-cdk/aws-ec2:noSubnetRouteTableId",
        "Subnets are imported by id for the functions' network interfaces only; their route tables are never read.",
      );
    }
    const securityGroups = vpc.securityGroupIds
      ? vpc.securityGroupIds.map((sgId, i) =>
          SecurityGroup.fromSecurityGroupId(this, `SecurityGroup${i}`, sgId),
        )
      : [
          new SecurityGroup(this, "SecurityGroup", {
            vpc: imported,
            description: "pybox functions: no inbound; outbound to AWS APIs, the gateway or the kernel pods",
            allowAllOutbound: true,
          }),
        ];
    return { vpc: imported, securityGroups };
  }
}

/**
 * The configuration every function reads (`lib/config.ts` validates it at cold start, so each
 * function needs the whole backend configuration even when it never calls the backend).
 */
function sharedEnvironment(settings: Settings, name: FunctionName): Record<string, string> {
  const env: Record<string, string> = {
    NODE_OPTIONS: "--enable-source-maps",
    POWERTOOLS_SERVICE_NAME: "pybox",
    PYBOX_BACKEND: settings.backend,
    PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS: String(
      Duration.minutes(settings.consumerTimeoutMinutes).minus(ASYNC_RUN_MARGIN).toMilliseconds(),
    ),
  };
  // Behind the API a run or a start must end before the 29 s function timeout. The consumer and
  // the reaper have minutes and keep the library's defaults (a queued run without `timeoutMs` gets
  // the default run timeout, bounded by PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS).
  if (name !== "queue" && name !== "reaper") {
    env.PYBOX_RUN_TIMEOUT_MS = String(SYNC_RUN_LIMIT_MS);
    env.PYBOX_MAX_RUN_TIMEOUT_MS = String(SYNC_RUN_LIMIT_MS);
    env.PYBOX_START_TIMEOUT_MS = String(SYNC_START_LIMIT_MS);
  }
  if (Object.keys(settings.kernelEnv).length > 0) env.PYBOX_KERNEL_ENV = JSON.stringify(settings.kernelEnv);
  if (settings.gateway?.url) env.PYBOX_GATEWAY_URL = settings.gateway.url;
  if (settings.gateway?.createCwd) env.PYBOX_GATEWAY_CREATE_CWD = "true";
  if (settings.gateway?.sharedHost === "allow") env.PYBOX_GATEWAY_SHARED_HOST = "allow";
  if (settings.cluster) {
    env.PYBOX_CLUSTER_NAMESPACE = settings.cluster.namespace;
    const auth = settings.cluster.auth;
    if (auth.kind === "eks") {
      env.PYBOX_EKS_CLUSTER = auth.cluster;
      env.PYBOX_EKS_ENDPOINT = auth.endpoint;
      env.PYBOX_EKS_CA = auth.caData;
    }
  }
  if (settings.tracing) env.PYBOX_TRACING = "true";
  if (settings.pool.size > 0) {
    env.PYBOX_POOL_SIZE = String(settings.pool.size);
    env.PYBOX_POOL_MAX_AGE_SECONDS = String(settings.pool.maxAgeMinutes * 60);
  }
  const idleSeconds = settings.idleTimeoutMinutes * 60;
  if (name === "reaper") env.PYBOX_IDLE_TIMEOUT_SECONDS = String(idleSeconds);
  // The controller culls idle pods itself: never before the reaper's idle time (plus one pass).
  if (settings.cluster) {
    env.PYBOX_CLUSTER_IDLE_TIMEOUT_SECONDS = String(idleSeconds + settings.reaperRateMinutes * 60);
  }
  // A kernel record must outlive the idle time, or TTL would drop a live kernel's record first.
  if (idleSeconds * 2 > DEFAULT_RECORD_TTL_SECONDS) env.PYBOX_RECORD_TTL_SECONDS = String(idleSeconds * 2);
  return env;
}

/** A function's name as CDK construct ids spell it (`start` → `Start`). */
export function capitalise(name: string): string {
  return name.charAt(0).toUpperCase() + name.slice(1);
}
