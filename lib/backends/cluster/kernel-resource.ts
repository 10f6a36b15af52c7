import { posix } from "node:path";
import * as z from "zod";
import type { ClusterConfig } from "../../config.ts";
import { ConfigError, ValidationError } from "../../errors.ts";
import { type ConnectionInfo, ConnectionInfoSchema, hasAllPorts } from "../../jupyter/connection.ts";

/** The jupyter-kernel-controller's custom resource. */
export const KERNEL_RESOURCE = {
  group: "jupyter.org",
  version: "v1",
  plural: "kernels",
  kind: "Kernel",
} as const;

/** Label the controller (and our clean-up) finds a kernel by. */
export const KERNEL_ID_LABEL = "jupyter.org/kernel-id";

/** Annotations the controller writes the kernel's connection JSON into (current name first). */
export const CONNECTION_ANNOTATIONS = [
  "jupyter.org/kernel-connection",
  "jupyter.org/kernel-connection-info",
] as const;

/** What the cluster backend asks for; everything else is operator configuration. */
export interface KernelResourceSpec {
  /** Resource name, `<username>-<kernelId>`. */
  name: string;
  namespace: string;
  /** Our generated kernel id (a UUID v4), also `KERNEL_ID` and the label. */
  kernelId: string;
  username: string;
  image: string;
  /** Operator + caller variables, already merged and checked. */
  env: Record<string, string>;
  workingDir?: string;
  idleTimeoutSeconds: number;
  cullingIntervalSeconds: number;
  /** Requests and limits of the kernel container (`PYBOX_CLUSTER_CPU`, `…_MEMORY`, `…_EPHEMERAL_STORAGE`). */
  resources: ClusterConfig["resources"];
  /** The pod's ServiceAccount: the monitor sidecar's identity (the kernel container never sees its token). */
  serviceAccount: string;
}

/** Where Kubernetes mounts a pod's ServiceAccount token, in every container that does not shadow it. */
const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The empty volume that shadows the token in the kernel's container. */
const NO_TOKEN_VOLUME = "pybox-no-service-account-token";

/**
 * The kernel container runs model-written code: never as root (uid 1000 and gid 100, `jovyan` of
 * Enterprise Gateway's kernel images), no way to gain privileges, no capabilities, the runtime's
 * seccomp filter. The controller's monitor sidecar keeps its own (it needs the API).
 */
export const KERNEL_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: 1000,
  runAsGroup: 100,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  seccompProfile: { type: "RuntimeDefault" },
} as const;

/** The home of Enterprise Gateway kernel images' user (`jovyan`), writable for IPython's and Jupyter's files. */
export const KERNEL_HOME = "/home/jovyan";

/**
 * The kernel's ZeroMQ ports (the launcher's `PORT_RANGE`), fixed so a NetworkPolicy can admit the
 * functions to exactly these (deploy/cluster/manifests/50-network-policies.yaml). The launcher wants
 * a range of at least 1000 (`EG_MIN_PORT_RANGE_SIZE`); a wide one makes the launcher's port clash
 * ({@link announcedPortClash}) rare: about 6 launches in 10,000 here, against 6 in 1,000 for 1,000 ports.
 */
export const KERNEL_PORT_RANGE = { first: 40000, last: 49999 } as const;

/**
 * Seconds a deleted kernel pod gets before SIGKILL. The controller's forced command makes bash and
 * the monitor PID 1, which ignore SIGTERM, so the default 30 s would only be waited out.
 */
export const KERNEL_TERMINATION_GRACE_SECONDS = 5;

const JsonList = z.array(z.record(z.string(), z.unknown()));

/** `KERNEL_VOLUMES` / `KERNEL_VOLUME_MOUNTS`: a JSON array, given as a string (env) or an array. */
export function parseVolumeList(name: string, value: unknown): Array<Record<string, unknown>> {
  if (value === undefined || value === "") return [];
  let parsed: unknown = value;
  if (typeof value === "string") {
    try {
      parsed = JSON.parse(value);
    } catch (cause) {
      throw new ConfigError(`${name} is not valid JSON`, { cause });
    }
  }
  const list = JsonList.safeParse(parsed);
  if (!list.success) throw new ConfigError(`${name} must be a JSON array of objects`);
  return list.data;
}

/**
 * The `Kernel` manifest: a pod template whose container `main` runs the operator's image with the
 * kernel's env (`KERNEL_*` included), its working dir and volumes, confined and bounded (see
 * {@link KERNEL_SECURITY_CONTEXT}), never restarted by Kubernetes (a dead kernel is reported, not
 * silently replaced).
 */
export function kernelManifest(spec: KernelResourceSpec) {
  const env: Record<string, string> = {
    ...spec.env,
    KERNEL_ID: spec.kernelId,
    KERNEL_USERNAME: spec.username,
    KERNEL_IMAGE: spec.image,
    PORT_RANGE: `${KERNEL_PORT_RANGE.first}..${KERNEL_PORT_RANGE.last}`,
    ...(spec.workingDir ? { KERNEL_WORKING_DIR: canonical(spec.workingDir) } : {}),
  };
  const volumes = parseVolumeList("KERNEL_VOLUMES", spec.env.KERNEL_VOLUMES);
  const volumeMounts = parseVolumeList("KERNEL_VOLUME_MOUNTS", spec.env.KERNEL_VOLUME_MOUNTS);
  // The root file system is read-only: the home, the working dir and /tmp are the kernel's own
  // scratch volumes, gone with the pod (and counted against its ephemeral-storage limit).
  const workingDir = spec.workingDir === undefined ? undefined : canonical(spec.workingDir);
  if (workingDir && isWithin(workingDir, SERVICE_ACCOUNT_DIR))
    throw new ValidationError(`cwd may not be ${SERVICE_ACCOUNT_DIR} or under it`);
  const scratch = [
    { name: "pybox-home", mountPath: KERNEL_HOME },
    { name: "pybox-tmp", mountPath: "/tmp" },
    // A working dir of its own, even under the home or /tmp: a runtime makes a missing one as root,
    // which uid 1000 cannot write to; an emptyDir is writable by all. At exactly the home or /tmp,
    // that volume serves already (two mounts at one path make a pod the API server refuses).
    ...(workingDir &&
    workingDir !== KERNEL_HOME &&
    workingDir !== "/tmp" &&
    !mountedByOperator(workingDir, volumeMounts)
      ? [{ name: "pybox-work", mountPath: workingDir }]
      : []),
  ];
  const labels = { [KERNEL_ID_LABEL]: spec.kernelId, "app.kubernetes.io/managed-by": "pybox-serverless" };
  return {
    apiVersion: `${KERNEL_RESOURCE.group}/${KERNEL_RESOURCE.version}`,
    kind: KERNEL_RESOURCE.kind,
    // The controller copies these labels to the pod (the CRD prunes any under spec.template.metadata).
    metadata: { name: spec.name, namespace: spec.namespace, labels },
    spec: {
      idleTimeoutSeconds: spec.idleTimeoutSeconds,
      cullingIntervalSeconds: spec.cullingIntervalSeconds,
      template: {
        spec: {
          restartPolicy: "Never",
          serviceAccountName: spec.serviceAccount,
          terminationGracePeriodSeconds: KERNEL_TERMINATION_GRACE_SECONDS,
          // Service links would put every Service's address in the kernel's environment.
          enableServiceLinks: false,
          securityContext: { seccompProfile: { type: "RuntimeDefault" } },
          containers: [
            {
              name: "main",
              image: spec.image,
              env: Object.entries(env)
                .filter(([key]) => key !== "KERNEL_VOLUMES" && key !== "KERNEL_VOLUME_MOUNTS")
                .map(([name, value]) => ({ name, value })),
              workingDir: workingDir ?? KERNEL_HOME,
              securityContext: { ...KERNEL_SECURITY_CONTEXT, readOnlyRootFilesystem: true },
              resources: { requests: spec.resources, limits: spec.resources },
              volumeMounts: [
                ...volumeMounts,
                ...scratch,
                // The pod's token would let the kernel's code read other kernels' connection keys.
                { name: NO_TOKEN_VOLUME, mountPath: SERVICE_ACCOUNT_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            ...volumes,
            ...scratch.map(({ name }) => ({ name, emptyDir: {} })),
            { name: NO_TOKEN_VOLUME, emptyDir: { sizeLimit: "1Mi" } },
          ],
        },
      },
    },
  };
}

/** `/a/b/../c/` as `/a/c`: mount paths must be unique, and one path has one spelling. */
function canonical(path: string): string {
  const normal = posix.normalize(path);
  return normal.length > 1 && normal.endsWith("/") ? normal.slice(0, -1) : normal;
}

function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** The operator mounted a volume of their own at (or above) the working dir: it is writable as they chose. */
function mountedByOperator(path: string, mounts: Array<Record<string, unknown>>): boolean {
  return mounts.some(
    (mount) => typeof mount.mountPath === "string" && isWithin(path, canonical(mount.mountPath)),
  );
}

const ConditionSchema = z.object({
  type: z.string(),
  status: z.string(),
  reason: z.string().optional(),
  message: z.string().optional(),
});

/** The parts of a `Kernel` object the backend reads, checked where they enter. */
export const KernelObjectSchema = z.object({
  metadata: z.object({
    name: z.string(),
    resourceVersion: z.string().optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  status: z
    .object({
      phase: z.string().optional(),
      conditions: z.array(ConditionSchema).optional(),
      /** The kernel container's state, which the controller mirrors from the pod. */
      containerState: z
        .object({
          waiting: z.object({ reason: z.string().optional(), message: z.string().optional() }).optional(),
          terminated: z
            .object({
              exitCode: z.number().optional(),
              reason: z.string().optional(),
              message: z.string().optional(),
            })
            .optional(),
        })
        .optional(),
    })
    .optional(),
});

/**
 * Waiting reasons from which a kernel container never comes up by itself. `ErrImagePull` is the
 * kubelet's first try and may pass (a registry's 429 or 5xx): it counts only when the registry said
 * the image is not there or not ours to pull. `CreateContainerError` and `RunContainerError` are
 * retried by the kubelet and are waited out like a slow start.
 */
const HOPELESS_WAITING = new Set([
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "CreateContainerConfigError",
]);

/** What a registry says of an image that will never be pulled, however often the kubelet tries. */
const PULL_REFUSED = /not found|no such|manifest unknown|unauthorized|denied|forbidden/i;

/**
 * Why a starting kernel will never be ready, from what the controller mirrors of its pod: an image
 * that cannot be pulled, a container that cannot be made or has exited, a failed pod. Undefined
 * while it may still come up.
 */
export function launchFailure(kernel: KernelObject): string | undefined {
  const state = kernel.status?.containerState;
  const say = (reason: string | undefined, message: string | undefined) =>
    [reason, message].filter(Boolean).join(": ").slice(0, 300);
  const waiting = state?.waiting;
  if (waiting?.reason && HOPELESS_WAITING.has(waiting.reason)) return say(waiting.reason, waiting.message);
  if (waiting?.reason === "ErrImagePull" && PULL_REFUSED.test(waiting.message ?? ""))
    return say(waiting.reason, waiting.message);
  if (state?.terminated) {
    const { exitCode, reason, message } = state.terminated;
    return `the kernel container exited${exitCode === undefined ? "" : ` with code ${exitCode}`}${reason ? ` (${say(reason, message)})` : ""}`;
  }
  if (kernel.status?.phase === "Failed")
    return `the kernel pod failed${notReadyReason(kernel) ? ` (${notReadyReason(kernel)})` : ""}`;
  return undefined;
}

/** A `Kernel` object as the API server returned it. */
export type KernelObject = z.infer<typeof KernelObjectSchema>;

/** Ready=True on the resource's status. */
export function isReady(kernel: KernelObject): boolean {
  return kernel.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** The connection JSON the controller annotated, under either annotation name. */
export function connectionAnnotation(kernel: KernelObject): string | undefined {
  const annotations = kernel.metadata.annotations ?? {};
  return CONNECTION_ANNOTATIONS.map((key) => annotations[key]).find((value) => value !== undefined);
}

/** The annotated connection JSON, if it is a complete, valid connection. */
export function parseAnnouncedConnection(text: string | undefined): ConnectionInfo | undefined {
  if (text === undefined) return undefined;
  try {
    const parsed = ConnectionInfoSchema.safeParse(JSON.parse(text));
    return parsed.success && hasAllPorts(parsed.data) ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

const AnnouncedPortsSchema = z.looseObject({
  shell_port: z.number(),
  iopub_port: z.number(),
  stdin_port: z.number(),
  control_port: z.number(),
  hb_port: z.number(),
  comm_port: z.number().optional(),
});

/**
 * A port the announced connection names twice: that kernel never answers. EG's launcher draws the
 * five kernel ports from `PORT_RANGE`, releases them, then draws its own `comm_port` from the same
 * range; when that draw repeats one of the five, ipykernel's bind fails ("Address already in use")
 * after the connection was announced, and neither the container nor readiness shows it.
 */
export function announcedPortClash(text: string): number | undefined {
  let parsed: z.infer<typeof AnnouncedPortsSchema>;
  try {
    const result = AnnouncedPortsSchema.safeParse(JSON.parse(text));
    if (!result.success) return undefined;
    parsed = result.data;
  } catch {
    return undefined;
  }
  const { shell_port, iopub_port, stdin_port, control_port, hb_port, comm_port } = parsed;
  const seen = new Set<number>();
  for (const port of [shell_port, iopub_port, stdin_port, control_port, hb_port, comm_port]) {
    if (port === undefined || port === 0) continue;
    if (seen.has(port)) return port;
    seen.add(port);
  }
  return undefined;
}

/** Why the kernel is not ready, from its status, for an error a caller can act on. */
export function notReadyReason(kernel: KernelObject | undefined): string | undefined {
  const condition = kernel?.status?.conditions?.find((c) => c.type === "Ready" && c.status !== "True");
  if (!condition?.reason && !condition?.message) return undefined;
  return [condition.reason, condition.message].filter(Boolean).join(": ").slice(0, 300);
}
