import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as z from "zod";
import type { ClusterConfig, Config, KernelLimits, LocalConfig } from "./config-types.ts";
import { ConfigError } from "./errors.ts";
import { loadOperatorEnv } from "./operator-env.ts";

export type { ClusterConfig, Config, GatewayConfig, KernelLimits, LocalConfig } from "./config-types.ts";

/** The repository root, for defaults that point at the project's own venv and state folder. */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** An empty value counts as unset, not as 0. */
const blankAsUnset = (value: unknown) =>
  typeof value === "string" && value.trim() === "" ? undefined : value;
/** A whole number from the environment. */
const int = (min: number, max: number, fallback: number) =>
  z.preprocess(blankAsUnset, z.coerce.number().int().min(min).max(max).default(fallback));
/** A whole number from the environment whose default depends on other variables. */
const optionalInt = (min: number, max: number) =>
  z.preprocess(blankAsUnset, z.coerce.number().int().min(min).max(max).optional());

/** Most kernels one warm pool may hold: a pool is for bursts of starts, not capacity planning. */
const MAX_POOL_SIZE = 50;

/**
 * What `npm start` uses where the environment is silent: a small warm pool, so a developer's
 * starts are as quick as a warmed deployment's. Deployed functions default to no pool.
 */
export const NPM_START_DEFAULTS = { PYBOX_POOL_SIZE: "2" } as const;

/** Default cap on one output entry; lowered to the total cap when that is smaller. */
const DEFAULT_MAX_OUTPUT_ENTRY_BYTES = 1024 * 1024;
const optionalText = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
  .optional();

/**
 * API Gateway ends an HTTP integration at 30 s; the HTTP functions (and `npm start`'s HTTP
 * invocations) end at 29 s, so a caller always gets our answer rather than the gateway's 503.
 */
export const HTTP_INVOCATION_TIMEOUT_MS = 29_000;

/**
 * The default and largest synchronous run: the rest of the 29 s invocation is for the interrupt
 * (3 s), restarting a kernel that ignored it (2 s) and answering (1 s). Longer work goes through
 * queued runs (`POST /kernels/{id}/runs`).
 */
export const SYNC_RUN_LIMIT_MS = 20_000;

/**
 * The default and largest start behind the API: the rest of the 29 s invocation is for recording
 * the kernel or deleting what the start made. `npm start` and the deployed HTTP functions use it;
 * queued starts may be given longer with `PYBOX_START_TIMEOUT_MS` on the consumer.
 */
export const SYNC_START_LIMIT_MS = 25_000;

/**
 * Kernel profile presets (`PYBOX_KERNEL_PROFILE`): a project-local environment with the packages
 * an agent's code expects, and the IPython profile, inside that environment, its kernels start
 * with. The profile is the one the agent's package installs, never a copy kept here.
 */
export const KERNEL_PROFILES = {
  tablegpt: {
    venv: join(PROJECT_ROOT, ".venv-tablegpt"),
    profile: join("share", "ipykernel", "profile", "tablegpt"),
  },
} as const;

/** The environment local kernels use when neither `PYBOX_PYTHON` nor a preset says otherwise. */
export const DEFAULT_KERNEL_VENV = join(PROJECT_ROOT, ".venv");

/** Roomy for pandas and matplotlib work, small enough that a runaway kernel can't take the machine. */
export const DEFAULT_KERNEL_LIMITS: KernelLimits = {
  memoryBytes: 4 * 1024 ** 3,
  processes: 256,
  fileBytes: 1024 ** 3,
  cpuSeconds: 3600,
  tmpBytes: 512 * 1024 ** 2,
};

/** A Kubernetes resource quantity (`500m`, `2`, `4Gi`). */
const quantity = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/, "a quantity such as 500m or 4Gi");

const EnvSchema = z.object({
  PYBOX_BACKEND: z.enum(["local", "gateway", "cluster"]).default("local"),
  PYBOX_TABLE: z.string().trim().min(3).max(255).default("pybox-kernels"),
  PYBOX_DYNAMODB_ENDPOINT: optionalText.pipe(z.url().optional()),
  AWS_REGION: optionalText,
  PYBOX_KERNEL_ENV_FILE: optionalText,
  PYBOX_KERNEL_ENV: optionalText,
  PYBOX_PYTHON: optionalText,
  PYBOX_KERNEL_PROFILE: z.preprocess(blankAsUnset, z.enum(["tablegpt"]).optional()),
  PYBOX_KERNEL_PROFILE_DIR: optionalText,
  PYBOX_GATEWAY_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  PYBOX_GATEWAY_TOKEN: optionalText,
  PYBOX_GATEWAY_TOKEN_SECRET: optionalText,
  PYBOX_GATEWAY_KERNEL_NAME: z.string().trim().min(1).default("python3"),
  PYBOX_GATEWAY_REQUEST_TIMEOUT_MS: int(100, 120_000, 10_000),
  PYBOX_GATEWAY_CREATE_CWD: z.preprocess(blankAsUnset, z.stringbool().default(false)),
  PYBOX_GATEWAY_SHARED_HOST: z.preprocess(blankAsUnset, z.enum(["refuse", "allow"]).default("refuse")),
  PYBOX_KUBECONFIG: optionalText,
  PYBOX_KUBECONFIG_SECRET: optionalText,
  PYBOX_EKS_CLUSTER: optionalText,
  PYBOX_EKS_ENDPOINT: optionalText.pipe(z.url({ protocol: /^https$/ }).optional()),
  PYBOX_EKS_CA: optionalText,
  KUBERNETES_SERVICE_HOST: optionalText,
  PYBOX_CLUSTER_NAMESPACE: z
    .string()
    .trim()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
    .max(63)
    .default("pybox-kernels"),
  PYBOX_CLUSTER_IDLE_TIMEOUT_SECONDS: int(0, 7 * 24 * 3600, 3600),
  PYBOX_CLUSTER_CULLING_INTERVAL_SECONDS: int(1, 24 * 3600, 60),
  PYBOX_CLUSTER_CPU: quantity.default("1"),
  PYBOX_CLUSTER_MEMORY: quantity.default("4Gi"),
  PYBOX_CLUSTER_EPHEMERAL_STORAGE: quantity.default("2Gi"),
  PYBOX_CLUSTER_SERVICE_ACCOUNT: z
    .string()
    .trim()
    .regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, "a Kubernetes name")
    .default("pybox-kernel-monitor"),
  PYBOX_STATE_DIR: optionalText,
  PYBOX_LOCAL_SANDBOX: z.enum(["auto", "bwrap", "off"]).default("auto"),
  PYBOX_LOCAL_CWD_ROOTS: optionalText,
  PYBOX_LOCAL_MEMORY_BYTES: int(64 * 1024 ** 2, 2 ** 50, DEFAULT_KERNEL_LIMITS.memoryBytes),
  PYBOX_LOCAL_MAX_PROCESSES: int(16, 1_000_000, DEFAULT_KERNEL_LIMITS.processes),
  PYBOX_LOCAL_MAX_FILE_BYTES: int(1024 ** 2, 2 ** 50, DEFAULT_KERNEL_LIMITS.fileBytes),
  PYBOX_LOCAL_CPU_SECONDS: int(10, 365 * 24 * 3600, DEFAULT_KERNEL_LIMITS.cpuSeconds),
  PYBOX_LOCAL_TMP_BYTES: int(1024 ** 2, 2 ** 50, DEFAULT_KERNEL_LIMITS.tmpBytes),
  PYBOX_RUN_TIMEOUT_MS: int(100, 15 * 60_000, SYNC_RUN_LIMIT_MS),
  PYBOX_MAX_RUN_TIMEOUT_MS: int(100, HTTP_INVOCATION_TIMEOUT_MS - 1_000, SYNC_RUN_LIMIT_MS),
  PYBOX_INTERRUPT_GRACE_MS: int(100, 60_000, 3_000),
  PYBOX_START_TIMEOUT_MS: int(1_000, 600_000, SYNC_START_LIMIT_MS),
  PYBOX_KEEP_CONNECTIONS_MS: int(0, 15 * 60_000, 60_000),
  PYBOX_BUSY_WAIT_MS: int(0, 600_000, 10_000),
  PYBOX_POOL_SIZE: int(0, MAX_POOL_SIZE, 0),
  PYBOX_POOL_MAX_AGE_SECONDS: int(60, 7 * 24 * 3600, 1800),
  PYBOX_MAX_CODE_BYTES: int(1, 6 * 1024 * 1024, 256 * 1024),
  PYBOX_MAX_OUTPUT_BYTES: int(1_024, 5 * 1024 * 1024, 4 * 1024 * 1024),
  PYBOX_MAX_OUTPUT_ENTRY_BYTES: optionalInt(1_024, 5 * 1024 * 1024),
  PYBOX_RECORD_TTL_SECONDS: int(60, 365 * 24 * 3600, 7 * 24 * 3600),
  PYBOX_QUEUE_URL: optionalText.pipe(z.url({ protocol: /^https?$/ }).optional()),
  PYBOX_SQS_ENDPOINT: optionalText.pipe(z.url().optional()),
  PYBOX_QUEUE_MAX_RECEIVES: int(1, 1_000, 5),
  PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS: int(100, 15 * 60_000, 14 * 60_000),
  PYBOX_MAX_ASYNC_RESULT_BYTES: int(10_000, 350_000, 300_000),
  PYBOX_RUN_RESULT_TTL_SECONDS: int(60, 30 * 24 * 3600, 24 * 3600),
  PYBOX_IDLE_TIMEOUT_SECONDS: int(1, 30 * 24 * 3600, 3600),
  PYBOX_MAX_KERNELS_PER_CALLER: int(1, 10_000, 10),
  PYBOX_MAX_FILE_BYTES: int(1, 5 * 1024 ** 3, 100 * 1024 ** 2),
  PYBOX_METRICS: z.preprocess(blankAsUnset, z.stringbool().optional()),
  PYBOX_TRACING: z.preprocess(blankAsUnset, z.stringbool().default(false)),
  AWS_LAMBDA_FUNCTION_NAME: optionalText,
  PORT: int(0, 65535, 8080),
});

/**
 * Parses an environment into a {@link Config}. Pure, so tests pass their own; a wrong value fails
 * with a message naming the variable. `defaults` fill in what the environment leaves unset (or
 * blank), for `npm start`'s own defaults.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  defaults: Readonly<Record<string, string>> = {},
): Config {
  const merged: NodeJS.ProcessEnv = { ...env };
  for (const [name, value] of Object.entries(defaults)) if (!merged[name]?.trim()) merged[name] = value;
  const parsed = EnvSchema.safeParse(merged);
  if (!parsed.success) {
    const details = parsed.error.issues
      .map((issue) => `${issue.path.join(".")}: ${issue.message}`)
      .join("; ");
    throw new ConfigError(`invalid configuration: ${details}`);
  }
  const e = parsed.data;
  if (e.PYBOX_RUN_TIMEOUT_MS > e.PYBOX_MAX_RUN_TIMEOUT_MS) {
    throw new ConfigError("invalid configuration: PYBOX_RUN_TIMEOUT_MS exceeds PYBOX_MAX_RUN_TIMEOUT_MS");
  }
  if (
    e.PYBOX_MAX_OUTPUT_ENTRY_BYTES !== undefined &&
    e.PYBOX_MAX_OUTPUT_ENTRY_BYTES > e.PYBOX_MAX_OUTPUT_BYTES
  ) {
    throw new ConfigError(
      `invalid configuration: PYBOX_MAX_OUTPUT_ENTRY_BYTES (${e.PYBOX_MAX_OUTPUT_ENTRY_BYTES}) exceeds PYBOX_MAX_OUTPUT_BYTES (${e.PYBOX_MAX_OUTPUT_BYTES}); one output entry cannot be larger than all of a run's output`,
    );
  }
  if (e.PYBOX_RECORD_TTL_SECONDS <= e.PYBOX_IDLE_TIMEOUT_SECONDS) {
    throw new ConfigError(
      "invalid configuration: PYBOX_RECORD_TTL_SECONDS must exceed PYBOX_IDLE_TIMEOUT_SECONDS (a record must outlive the idle time, or TTL would drop a live kernel's record before the reaper stops it)",
    );
  }
  const stateDir = resolve(e.PYBOX_STATE_DIR ?? join(PROJECT_ROOT, ".pybox"));
  if (e.PYBOX_BACKEND === "gateway" && !e.PYBOX_GATEWAY_URL) {
    throw new ConfigError("invalid configuration: PYBOX_GATEWAY_URL is required for the gateway backend");
  }
  const operatorEnv = loadOperatorEnv(e.PYBOX_KERNEL_ENV_FILE, e.PYBOX_KERNEL_ENV);
  const cluster = e.PYBOX_BACKEND === "cluster" ? clusterConfig(e, operatorEnv) : undefined;
  if (e.PYBOX_GATEWAY_TOKEN && e.PYBOX_GATEWAY_TOKEN_SECRET) {
    throw new ConfigError(
      "invalid configuration: set PYBOX_GATEWAY_TOKEN or PYBOX_GATEWAY_TOKEN_SECRET, not both",
    );
  }
  return {
    backend: e.PYBOX_BACKEND,
    table: e.PYBOX_TABLE,
    dynamodb: {
      ...(e.PYBOX_DYNAMODB_ENDPOINT ? { endpoint: e.PYBOX_DYNAMODB_ENDPOINT } : {}),
      ...(e.AWS_REGION ? { region: e.AWS_REGION } : {}),
    },
    operatorEnv,
    run: {
      defaultTimeoutMs: e.PYBOX_RUN_TIMEOUT_MS,
      maxTimeoutMs: e.PYBOX_MAX_RUN_TIMEOUT_MS,
      interruptGraceMs: e.PYBOX_INTERRUPT_GRACE_MS,
      busyWaitMs: e.PYBOX_BUSY_WAIT_MS,
      maxCodeBytes: e.PYBOX_MAX_CODE_BYTES,
      maxOutputBytes: e.PYBOX_MAX_OUTPUT_BYTES,
      maxOutputEntryBytes:
        e.PYBOX_MAX_OUTPUT_ENTRY_BYTES ?? Math.min(DEFAULT_MAX_OUTPUT_ENTRY_BYTES, e.PYBOX_MAX_OUTPUT_BYTES),
    },
    asyncRun: {
      maxTimeoutMs: e.PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS,
      maxResultBytes: e.PYBOX_MAX_ASYNC_RESULT_BYTES,
      resultTtlSeconds: e.PYBOX_RUN_RESULT_TTL_SECONDS,
    },
    queue: {
      maxReceives: e.PYBOX_QUEUE_MAX_RECEIVES,
      ...(e.PYBOX_QUEUE_URL ? { url: e.PYBOX_QUEUE_URL } : {}),
      ...(e.PYBOX_SQS_ENDPOINT ? { endpoint: e.PYBOX_SQS_ENDPOINT } : {}),
      ...(e.AWS_REGION ? { region: e.AWS_REGION } : {}),
    },
    idleTimeoutSeconds: e.PYBOX_IDLE_TIMEOUT_SECONDS,
    maxKernelsPerCaller: e.PYBOX_MAX_KERNELS_PER_CALLER,
    files: { maxFileBytes: e.PYBOX_MAX_FILE_BYTES },
    startTimeoutMs: e.PYBOX_START_TIMEOUT_MS,
    keepConnectionsMs: e.PYBOX_KEEP_CONNECTIONS_MS,
    pool: { size: e.PYBOX_POOL_SIZE, maxAgeMs: e.PYBOX_POOL_MAX_AGE_SECONDS * 1_000 },
    metrics: e.PYBOX_METRICS ?? e.AWS_LAMBDA_FUNCTION_NAME !== undefined,
    tracing: e.PYBOX_TRACING,
    recordTtlSeconds: e.PYBOX_RECORD_TTL_SECONDS,
    local: {
      ...kernelInterpreter(e),
      stateDir,
      sandbox: e.PYBOX_LOCAL_SANDBOX,
      ...(e.PYBOX_LOCAL_CWD_ROOTS ? { cwdRoots: cwdRoots(e.PYBOX_LOCAL_CWD_ROOTS) } : {}),
      limits: {
        memoryBytes: e.PYBOX_LOCAL_MEMORY_BYTES,
        processes: e.PYBOX_LOCAL_MAX_PROCESSES,
        fileBytes: e.PYBOX_LOCAL_MAX_FILE_BYTES,
        cpuSeconds: e.PYBOX_LOCAL_CPU_SECONDS,
        tmpBytes: e.PYBOX_LOCAL_TMP_BYTES,
      },
    },
    ...(e.PYBOX_GATEWAY_URL
      ? {
          gateway: {
            url: e.PYBOX_GATEWAY_URL.replace(/\/+$/, ""),
            ...(e.PYBOX_GATEWAY_TOKEN ? { token: e.PYBOX_GATEWAY_TOKEN } : {}),
            ...(e.PYBOX_GATEWAY_TOKEN_SECRET ? { tokenSecret: e.PYBOX_GATEWAY_TOKEN_SECRET } : {}),
            kernelName: e.PYBOX_GATEWAY_KERNEL_NAME,
            requestTimeoutMs: e.PYBOX_GATEWAY_REQUEST_TIMEOUT_MS,
            createCwd: e.PYBOX_GATEWAY_CREATE_CWD,
            sharedHost: e.PYBOX_GATEWAY_SHARED_HOST,
          },
        }
      : {}),
    ...(cluster ? { cluster } : {}),
    port: e.PORT,
  };
}

/** `PYBOX_LOCAL_CWD_ROOTS`: absolute folders separated by `:`. */
function cwdRoots(value: string): string[] {
  const roots = value.split(":").filter((root) => root.trim() !== "");
  const relativeRoot = roots.find((root) => !root.startsWith("/"));
  if (relativeRoot !== undefined) {
    throw new ConfigError(
      `invalid configuration: PYBOX_LOCAL_CWD_ROOTS: '${relativeRoot}' is not an absolute path`,
    );
  }
  return roots.map((root) => resolve(root));
}

function clusterConfig(e: z.infer<typeof EnvSchema>, operatorEnv: Record<string, string>): ClusterConfig {
  const image = operatorEnv.KERNEL_IMAGE;
  if (!image) {
    throw new ConfigError(
      "invalid configuration: the cluster backend needs KERNEL_IMAGE in the operator kernel env",
    );
  }
  const ways = [e.PYBOX_KUBECONFIG, e.PYBOX_KUBECONFIG_SECRET, e.PYBOX_EKS_CLUSTER].filter(Boolean).length;
  if (ways > 1) {
    throw new ConfigError(
      "invalid configuration: set only one of PYBOX_KUBECONFIG, PYBOX_KUBECONFIG_SECRET, PYBOX_EKS_CLUSTER",
    );
  }
  if (ways === 0 && !e.KUBERNETES_SERVICE_HOST) {
    throw new ConfigError(
      "invalid configuration: the cluster backend needs PYBOX_KUBECONFIG, PYBOX_KUBECONFIG_SECRET or PYBOX_EKS_CLUSTER outside a cluster",
    );
  }
  let auth: ClusterConfig["auth"] = { kind: "in-cluster" };
  if (e.PYBOX_KUBECONFIG) auth = { kind: "kubeconfig-file", path: e.PYBOX_KUBECONFIG };
  if (e.PYBOX_KUBECONFIG_SECRET) auth = { kind: "kubeconfig-secret", secretId: e.PYBOX_KUBECONFIG_SECRET };
  if (e.PYBOX_EKS_CLUSTER) {
    if (!e.PYBOX_EKS_ENDPOINT || !e.PYBOX_EKS_CA || !e.AWS_REGION) {
      throw new ConfigError(
        "invalid configuration: PYBOX_EKS_CLUSTER needs PYBOX_EKS_ENDPOINT, PYBOX_EKS_CA and AWS_REGION",
      );
    }
    auth = {
      kind: "eks",
      cluster: e.PYBOX_EKS_CLUSTER,
      endpoint: e.PYBOX_EKS_ENDPOINT,
      caData: e.PYBOX_EKS_CA,
      region: e.AWS_REGION,
    };
  }
  return {
    namespace: e.PYBOX_CLUSTER_NAMESPACE,
    auth,
    idleTimeoutSeconds: e.PYBOX_CLUSTER_IDLE_TIMEOUT_SECONDS,
    cullingIntervalSeconds: e.PYBOX_CLUSTER_CULLING_INTERVAL_SECONDS,
    resources: {
      cpu: e.PYBOX_CLUSTER_CPU,
      memory: e.PYBOX_CLUSTER_MEMORY,
      "ephemeral-storage": e.PYBOX_CLUSTER_EPHEMERAL_STORAGE,
    },
    serviceAccount: e.PYBOX_CLUSTER_SERVICE_ACCOUNT,
    image,
  };
}

/**
 * The local kernels' interpreter and profile: `PYBOX_PYTHON` and `PYBOX_KERNEL_PROFILE_DIR` win;
 * a preset fills in what they leave unset, its profile taken from whichever environment runs the
 * kernels (`<prefix>/share/…`, where pip installs it).
 */
function kernelInterpreter(e: z.infer<typeof EnvSchema>): Pick<LocalConfig, "python" | "profileDir"> {
  const preset = e.PYBOX_KERNEL_PROFILE ? KERNEL_PROFILES[e.PYBOX_KERNEL_PROFILE] : undefined;
  const python = resolve(e.PYBOX_PYTHON ?? join(preset?.venv ?? DEFAULT_KERNEL_VENV, "bin", "python"));
  const profileDir = e.PYBOX_KERNEL_PROFILE_DIR
    ? resolve(e.PYBOX_KERNEL_PROFILE_DIR)
    : preset && join(dirname(dirname(python)), preset.profile);
  return profileDir ? { python, profileDir } : { python };
}
