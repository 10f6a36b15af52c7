import { RetentionDays } from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import * as z from "zod";
import type { DeployedBackend, LambdaArchitecture } from "./bundling.ts";

/**
 * The deployment's settings, read from CDK context (`-c key=value` or `cdk.json`'s `context`) and
 * checked once, before any construct is made: a wrong value stops `cdk synth` with a message naming
 * the key, never a half-built stack or a function that fails at cold start.
 */

/** A wrong or missing context value; the message names the key. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SettingsError";
  }
}

/** How callers authenticate to the API: SigV4 (IAM) or a JWT from the operator's identity provider. */
export type AuthorizerSettings = { kind: "iam" } | { kind: "jwt"; issuer: string; audience: string[] };

/** An existing VPC to run the functions in, imported from ids alone so synth needs no lookups. */
export interface VpcSettings {
  vpcId: string;
  availabilityZones: string[];
  privateSubnetIds: string[];
  /** Security groups for the functions; when absent the stack makes one that allows all egress. */
  securityGroupIds?: string[];
}

/** Where the Enterprise Gateway is and where its token lives. */
export interface GatewaySettings {
  /**
   * The gateway's base URL; when absent it becomes the stack's `GatewayUrl` CloudFormation
   * parameter, so `cdk synth` works with no context and `cdk deploy` asks for the URL.
   */
  url?: string;
  /** An existing secret; when absent the stack creates one for the operator to fill. */
  tokenSecretArn?: string;
  /** A caller's `cwd` missing on the gateway's kernel host is made there, not refused with 400. */
  createCwd: boolean;
  /** On a gateway whose kernels share one host: serve one caller (`refuse`) or all (`allow`). */
  sharedHost: "refuse" | "allow";
}

/** How the functions reach the Kubernetes API of the kernel cluster. */
export interface ClusterSettings {
  namespace: string;
  auth:
    | { kind: "eks"; cluster: string; endpoint: string; caData: string; kubernetesGroup?: string }
    | { kind: "kubeconfig-secret"; secretArn: string };
}

/** Everything the stack is configured by, validated and with defaults applied. */
export interface Settings {
  backend: DeployedBackend;
  architecture: LambdaArchitecture;
  memoryMb: number;
  authorizer: AuthorizerSettings;
  gateway?: GatewaySettings;
  cluster?: ClusterSettings;
  /** Operator kernel environment (`PYBOX_KERNEL_ENV`), values as strings. */
  kernelEnv: Record<string, string>;
  vpc?: VpcSettings;
  idleTimeoutMinutes: number;
  /**
   * Warm pool: kernels kept started ahead of demand (0: none) and the age at which the reaper
   * replaces one. A pool costs what its idle kernels cost, around the clock.
   */
  pool: { size: number; maxAgeMinutes: number };
  reaperRateMinutes: number;
  consumerTimeoutMinutes: number;
  queueBatchSize: number;
  logRetention: RetentionDays;
  /** Where alarm notifications are emailed (an SNS topic is made for them); none when absent. */
  alarmEmail?: string;
  /** X-Ray: active tracing on the functions and a subsegment per backend call; off by default. */
  tracing: boolean;
  throttle: { rateLimit: number; burstLimit: number };
}

/** Every context key the stack reads; anything else in the context is CDK's own. */
export const CONTEXT_KEYS = [
  "backend",
  "architecture",
  "memoryMb",
  "authorizer",
  "jwtIssuer",
  "jwtAudience",
  "gatewayUrl",
  "gatewayTokenSecretArn",
  "gatewayCreateCwd",
  "gatewaySharedHost",
  "kernelEnv",
  "clusterNamespace",
  "eksCluster",
  "eksEndpoint",
  "eksCa",
  "eksKubernetesGroup",
  "kubeconfigSecretArn",
  "vpc",
  "idleTimeoutMinutes",
  "poolSize",
  "poolMaxAgeMinutes",
  "reaperRate",
  "consumerTimeoutMinutes",
  "queueBatchSize",
  "logRetentionDays",
  "throttle",
  "alarmEmail",
  "tracing",
] as const;

type ContextKey = (typeof CONTEXT_KEYS)[number];

/** `-c key=value` always gives a string; `cdk.json` gives JSON. Strings holding JSON are parsed. */
function json<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => {
    if (typeof value !== "string") return value;
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return value;
    }
  }, schema);
}

/** A whole number, given as a number or as the text of one. */
function wholeNumber(min: number, max: number, fallback: number) {
  return z.preprocess(
    (value) => (typeof value === "string" && value.trim() !== "" ? Number(value) : value),
    z
      .number({ error: "must be a whole number" })
      .int({ error: "must be a whole number" })
      .min(min, { error: `must be at least ${min}` })
      .max(max, { error: `must be at most ${max}` })
      .default(fallback),
  );
}

const text = z.string().trim().min(1, { error: "must not be empty" });
const textList = z.preprocess(
  (value) => (typeof value === "string" && !value.trim().startsWith("[") ? value.split(",") : value),
  json(z.array(text).min(1, { error: "must list at least one value" })),
);
const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });
const httpsUrl = z.url({ protocol: /^https$/, error: "must be an https URL" });
/** A complete secret ARN (with the random suffix), as the console and `aws secretsmanager` print it. */
const secretArn = z
  .string()
  .trim()
  .regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/, {
    error:
      "must be a complete Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 characters>)",
  });
const retentionDays = new Set<number>(
  Object.values(RetentionDays).filter((value): value is number => typeof value === "number"),
);

const ContextSchema = z.object({
  backend: z.preprocess(
    (value) => (typeof value === "string" ? value.trim() : (value ?? "gateway")),
    z.enum(["gateway", "cluster"], {
      error: (issue) =>
        issue.input === "local"
          ? "local runs kernels as processes beside the handler, which Lambda cannot do: use gateway or cluster"
          : "must be gateway or cluster",
    }),
  ),
  architecture: z.enum(["arm64", "x86_64"], { error: "must be arm64 or x86_64" }).default("arm64"),
  memoryMb: wholeNumber(128, 10_240, 1024),
  authorizer: z.enum(["iam", "jwt"], { error: "must be iam or jwt" }).default("iam"),
  jwtIssuer: httpsUrl.optional(),
  jwtAudience: textList.optional(),
  gatewayUrl: httpUrl.optional(),
  gatewayTokenSecretArn: secretArn.optional(),
  gatewayCreateCwd: z
    .union([z.boolean(), z.enum(["true", "false"])], { error: "must be true or false" })
    .transform((value) => value === true || value === "true")
    .optional(),
  gatewaySharedHost: z.enum(["refuse", "allow"], { error: "must be refuse or allow" }).optional(),
  kernelEnv: json(
    z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.union([z.string(), z.number(), z.boolean()]), {
      error: "must be a JSON object of variable names to strings, numbers or booleans",
    }),
  ).default({}),
  clusterNamespace: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { error: "must be a Kubernetes namespace name" })
    .max(63)
    .default("pybox-kernels"),
  eksCluster: text.optional(),
  eksEndpoint: httpsUrl.optional(),
  eksCa: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9+/]+={0,2}$/, { error: "must be the cluster's base64 certificate authority data" })
    .optional(),
  eksKubernetesGroup: text.optional(),
  kubeconfigSecretArn: secretArn.optional(),
  vpc: json(
    z.object(
      {
        vpcId: z.string().regex(/^vpc-[0-9a-f]+$/, { error: "must be a VPC id (vpc-...)" }),
        availabilityZones: z.array(text).min(1),
        privateSubnetIds: z
          .array(z.string().regex(/^subnet-[0-9a-f]+$/, { error: "must be subnet ids (subnet-...)" }))
          .min(1),
        securityGroupIds: z
          .array(z.string().regex(/^sg-[0-9a-f]+$/, { error: "must be security group ids (sg-...)" }))
          .min(1)
          .optional(),
      },
      { error: "must be a JSON object {vpcId, availabilityZones, privateSubnetIds, securityGroupIds?}" },
    ),
  ).optional(),
  // At most six days: with one reaper pass on top it stays within the controller's 7-day maximum.
  idleTimeoutMinutes: wholeNumber(1, 6 * 24 * 60, 60),
  poolSize: wholeNumber(0, 50, 0),
  poolMaxAgeMinutes: wholeNumber(1, 7 * 24 * 60, 30),
  reaperRate: wholeNumber(1, 24 * 60, 5),
  consumerTimeoutMinutes: wholeNumber(2, 15, 15),
  queueBatchSize: wholeNumber(1, 10, 1),
  logRetentionDays: wholeNumber(1, 9999, 30).refine((days) => retentionDays.has(days), {
    error: `must be one of CloudWatch's retention periods: ${[...retentionDays].join(", ")}`,
  }),
  alarmEmail: z.email({ error: "must be an email address" }).optional(),
  tracing: z
    .union([z.boolean(), z.enum(["true", "false"])], { error: "must be true or false" })
    .transform((value) => value === true || value === "true")
    .default(false),
  throttle: json(
    z.object(
      {
        rate: wholeNumber(1, 10_000, 50),
        burst: wholeNumber(1, 5_000, 100),
      },
      { error: 'must be a JSON object {"rate": requests per second, "burst": requests}' },
    ),
  ).default({ rate: 50, burst: 100 }),
});

/**
 * Reads the stack's context keys from a construct (the app) and validates them. Called once, in
 * `infra/app.ts`; tests call {@link parseSettings} with their own context.
 */
export function readSettings(scope: Construct): Settings {
  const context: Partial<Record<ContextKey, unknown>> = {};
  for (const key of CONTEXT_KEYS) {
    const value: unknown = scope.node.tryGetContext(key);
    if (value !== undefined) context[key] = value;
  }
  return parseSettings(context);
}

function fail(key: ContextKey, message: string): never {
  throw new SettingsError(`invalid CDK context \`${key}\`: ${message}`);
}

/**
 * Validates a context object into {@link Settings}: types, ranges, and the rules across keys
 * (each backend's required keys, one way to the cluster, JWT issuer with audience).
 */
export function parseSettings(context: Partial<Record<ContextKey, unknown>>): Settings {
  const parsed = ContextSchema.safeParse(context);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? "context") as ContextKey;
    const inner = issue && issue.path.length > 1 ? ` (at ${issue.path.slice(1).join(".")})` : "";
    fail(key, `${issue?.message ?? "is invalid"}${inner}`);
  }
  const c = parsed.data;
  const kernelEnv = Object.fromEntries(Object.entries(c.kernelEnv).map(([k, v]) => [k, String(v)]));
  // Lambda allows 4 KB of environment per function, shared with the stack's own variables.
  if (JSON.stringify(kernelEnv).length > 2_048) {
    fail("kernelEnv", "is larger than 2 KB as JSON; Lambda allows 4 KB of environment per function in all");
  }

  let authorizer: AuthorizerSettings = { kind: "iam" };
  if (c.authorizer === "jwt") {
    if (!c.jwtIssuer)
      fail("jwtIssuer", "is required when authorizer is jwt (the identity provider's https issuer URL)");
    if (!c.jwtAudience)
      fail("jwtAudience", "is required when authorizer is jwt (a list of accepted audiences)");
    authorizer = { kind: "jwt", issuer: c.jwtIssuer, audience: c.jwtAudience };
  } else {
    for (const key of ["jwtIssuer", "jwtAudience"] as const) {
      if (c[key] !== undefined) fail(key, "is set, but authorizer is not jwt");
    }
  }

  if (c.vpc && c.vpc.privateSubnetIds.length % c.vpc.availabilityZones.length !== 0) {
    fail(
      "vpc",
      `privateSubnetIds (${c.vpc.privateSubnetIds.length}) must be a multiple of availabilityZones (${c.vpc.availabilityZones.length}), listed zone by zone`,
    );
  }

  // The controller culls a pod idle for the idle time: a pooled one must be retired before that.
  if (c.backend === "cluster" && c.poolSize > 0 && c.poolMaxAgeMinutes >= c.idleTimeoutMinutes) {
    fail(
      "poolMaxAgeMinutes",
      `must be less than idleTimeoutMinutes (${c.idleTimeoutMinutes}): the controller culls idle kernel pods, pooled ones too`,
    );
  }

  const common = {
    architecture: c.architecture,
    memoryMb: c.memoryMb,
    authorizer,
    kernelEnv,
    ...(c.vpc ? { vpc: c.vpc } : {}),
    idleTimeoutMinutes: c.idleTimeoutMinutes,
    pool: { size: c.poolSize, maxAgeMinutes: c.poolMaxAgeMinutes },
    reaperRateMinutes: c.reaperRate,
    consumerTimeoutMinutes: c.consumerTimeoutMinutes,
    queueBatchSize: c.queueBatchSize,
    logRetention: c.logRetentionDays as RetentionDays,
    throttle: { rateLimit: c.throttle.rate, burstLimit: c.throttle.burst },
    ...(c.alarmEmail ? { alarmEmail: c.alarmEmail } : {}),
    tracing: c.tracing,
  };
  const clusterKeys = [
    "eksCluster",
    "eksEndpoint",
    "eksCa",
    "eksKubernetesGroup",
    "kubeconfigSecretArn",
  ] as const;

  if (c.backend === "gateway") {
    for (const key of clusterKeys) {
      if (c[key] !== undefined) fail(key, "is set, but backend is gateway");
    }
    return {
      ...common,
      backend: "gateway",
      gateway: {
        ...(c.gatewayUrl ? { url: c.gatewayUrl.replace(/\/+$/, "") } : {}),
        ...(c.gatewayTokenSecretArn ? { tokenSecretArn: c.gatewayTokenSecretArn } : {}),
        createCwd: c.gatewayCreateCwd ?? false,
        sharedHost: c.gatewaySharedHost ?? "refuse",
      },
    };
  }

  for (const key of [
    "gatewayUrl",
    "gatewayTokenSecretArn",
    "gatewayCreateCwd",
    "gatewaySharedHost",
  ] as const) {
    if (c[key] !== undefined) fail(key, "is set, but backend is cluster");
  }
  if (!kernelEnv.KERNEL_IMAGE) {
    fail("kernelEnv", 'needs KERNEL_IMAGE for the cluster backend (e.g. {"KERNEL_IMAGE": "<image>"})');
  }
  if (!c.vpc) {
    fail(
      "vpc",
      "is required for the cluster backend: the functions speak ZeroMQ straight to the kernel pods",
    );
  }
  let auth: ClusterSettings["auth"];
  if (c.eksCluster && c.kubeconfigSecretArn) {
    fail("kubeconfigSecretArn", "is set together with eksCluster: choose one way to the cluster");
  } else if (c.eksCluster) {
    if (!c.eksEndpoint) fail("eksEndpoint", "is required with eksCluster (the cluster's https API endpoint)");
    if (!c.eksCa)
      fail("eksCa", "is required with eksCluster (the cluster's base64 certificate authority data)");
    auth = {
      kind: "eks",
      cluster: c.eksCluster,
      endpoint: c.eksEndpoint,
      caData: c.eksCa,
      ...(c.eksKubernetesGroup ? { kubernetesGroup: c.eksKubernetesGroup } : {}),
    };
  } else if (c.kubeconfigSecretArn) {
    for (const key of ["eksEndpoint", "eksCa", "eksKubernetesGroup"] as const) {
      if (c[key] !== undefined) fail(key, "is set, but eksCluster is not");
    }
    auth = { kind: "kubeconfig-secret", secretArn: c.kubeconfigSecretArn };
  } else {
    fail("eksCluster", "or kubeconfigSecretArn is required for the cluster backend");
  }
  return { ...common, backend: "cluster", cluster: { namespace: c.clusterNamespace, auth } };
}
