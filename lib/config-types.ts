/*
 * The shape of the product's settings: what `loadConfig` (lib/config.ts) returns and what every
 * module that is configured takes. Types only; reading and checking the environment is config.ts's.
 */

/** Where the Enterprise Gateway is and how to authenticate to it. */
export interface GatewayConfig {
  url: string;
  /** The token itself, or the Secrets Manager id holding it (one of the two, or neither for an open gateway). */
  token?: string;
  tokenSecret?: string;
  kernelName: string;
  requestTimeoutMs: number;
  /** A caller's `cwd` missing on the kernel's host is made there (`PYBOX_GATEWAY_CREATE_CWD`), not refused with 400. */
  createCwd: boolean;
  /**
   * A gateway that runs every caller's kernels as processes of one user on one host serves one
   * caller (`refuse`, the default), or all of them with a warning (`allow`).
   */
  sharedHost: "refuse" | "allow";
}

/** How to reach the Kubernetes API and what Kernel resources to make. */
export interface ClusterConfig {
  namespace: string;
  /** One way to the API server: a kubeconfig file or secret, an EKS cluster, else in-cluster. */
  auth:
    | { kind: "kubeconfig-file"; path: string }
    | { kind: "kubeconfig-secret"; secretId: string }
    | { kind: "eks"; cluster: string; endpoint: string; caData: string; region: string }
    | { kind: "in-cluster" };
  idleTimeoutSeconds: number;
  cullingIntervalSeconds: number;
  /**
   * Requests and limits (equal) of the kernel container. The pod stays Burstable: the controller
   * adds its monitor sidecar with none, and our template cannot bound it.
   */
  resources: { cpu: string; memory: string; "ephemeral-storage": string };
  /** The kernel pods' ServiceAccount, the monitor sidecar's identity (deploy/cluster/manifests). */
  serviceAccount: string;
  /** The kernel image, from the operator's kernel env (`KERNEL_IMAGE`); required. */
  image: string;
}

/**
 * What one sandboxed local kernel may use. Enforced as rlimits inside bubblewrap, where they bound
 * that kernel alone (see `lib/backends/local/bwrap.ts`).
 */
export interface KernelLimits {
  /** RLIMIT_DATA: heap and private mappings of each process, so a memory bomb gets `MemoryError`. */
  memoryBytes: number;
  /** RLIMIT_NPROC: processes and threads of the kernel, so a fork bomb stalls inside it. */
  processes: number;
  /** RLIMIT_FSIZE: the largest file it may write. */
  fileBytes: number;
  /** RLIMIT_CPU: CPU seconds of each of its processes over its life. */
  cpuSeconds: number;
  /** Size of its private `/tmp`. */
  tmpBytes: number;
}

/** The local backend's settings. */
export interface LocalConfig {
  python: string;
  /** The IPython profile folder every kernel starts from (each kernel gets its own copy). */
  profileDir?: string;
  stateDir: string;
  /** `auto` confines kernels with bubblewrap where it works, `bwrap` requires it, `off` never uses it. */
  sandbox: "auto" | "bwrap" | "off";
  /** When set, a sandboxed kernel's `cwd` must be inside one of these folders. */
  cwdRoots?: string[];
  limits: KernelLimits;
}

/** Everything the product is configured by, parsed and checked once per cold start. */
export interface Config {
  backend: "local" | "gateway" | "cluster";
  table: string;
  /** Set only to reach a DynamoDB emulator; Lambda uses the SDK's own resolution. */
  dynamodb: {
    endpoint?: string;
    region?: string;
    credentials?: { accessKeyId: string; secretAccessKey: string };
  };
  /** Operator kernel environment: pybox's `env_file` merged with `kernel_env` (which wins). */
  operatorEnv: Record<string, string>;
  run: {
    defaultTimeoutMs: number;
    maxTimeoutMs: number;
    interruptGraceMs: number;
    busyWaitMs: number;
    maxCodeBytes: number;
    /**
     * Response bytes a run's output (data and error) may take: the RunResult, JSON inside the
     * Lambda response's JSON, stays this plus a small fixed overhead, well under Lambda's 6 MB.
     */
    maxOutputBytes: number;
    /**
     * Response bytes one output entry (a stream, a display) or the error may take: 1 MiB by
     * default, or the total when that is smaller; set above the total, it is refused.
     */
    maxOutputEntryBytes: number;
  };
  /** Queued runs (`POST /kernels/{id}/runs`): bounded by the consumer's timeout and DynamoDB's item size. */
  asyncRun: {
    maxTimeoutMs: number;
    /** A stored result is cut to this many bytes of JSON (an item holds at most 400 KB). */
    maxResultBytes: number;
    resultTtlSeconds: number;
  };
  /** Where queued runs go; the URL is unset under `npm start`, which queues in-process. */
  queue: {
    url?: string;
    /** The queue's redrive `maxReceiveCount`: the consumer's last chance to close a run it must give up. */
    maxReceives: number;
    endpoint?: string;
    region?: string;
    credentials?: { accessKeyId: string; secretAccessKey: string };
  };
  /** The reaper stops kernels unused for longer than this. */
  idleTimeoutSeconds: number;
  /** Live kernels one caller may hold at once. */
  maxKernelsPerCaller: number;
  /** Files in and out of kernels: the largest file, in bytes (a bigger upload is refused before any byte). */
  files: { maxFileBytes: number };
  startTimeoutMs: number;
  /** How long a kernel's connection (sockets, websocket) stays open after a use for the next one; 0 opens one per use. */
  keepConnectionsMs: number;
  recordTtlSeconds: number;
  /**
   * The warm pool: kernels started ahead of demand with the operator's env only, claimed by
   * starts (`size` 0: none); one older than `maxAgeMs` is retired by the reaper.
   */
  pool: { size: number; maxAgeMs: number };
  /** Whether metrics are written (EMF log lines): in Lambda by default, not under `npm start` (`PYBOX_METRICS`). */
  metrics: boolean;
  /** Whether backend calls are traced in X-Ray subsegments (`PYBOX_TRACING`; the function's active tracing too). */
  tracing: boolean;
  /** The local backend: its interpreter, its state folder, and how its kernels are confined. */
  local: LocalConfig;
  /** Set when `backend` is `gateway`. The token itself is resolved at cold start, never stored here. */
  gateway?: GatewayConfig;
  /** Set when `backend` is `cluster`. */
  cluster?: ClusterConfig;
  port: number;
}
