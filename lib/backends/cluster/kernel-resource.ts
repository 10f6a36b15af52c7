import * as z from "zod";
import { ConfigError } from "../../errors.ts";

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
}

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
 * kernel's env (`KERNEL_*` included), its working dir and volumes, never restarted by Kubernetes
 * (a dead kernel is reported, not silently replaced).
 */
export function kernelManifest(spec: KernelResourceSpec) {
  const env: Record<string, string> = {
    ...spec.env,
    KERNEL_ID: spec.kernelId,
    KERNEL_USERNAME: spec.username,
    KERNEL_IMAGE: spec.image,
    ...(spec.workingDir ? { KERNEL_WORKING_DIR: spec.workingDir } : {}),
  };
  const volumes = parseVolumeList("KERNEL_VOLUMES", spec.env.KERNEL_VOLUMES);
  const volumeMounts = parseVolumeList("KERNEL_VOLUME_MOUNTS", spec.env.KERNEL_VOLUME_MOUNTS);
  const labels = { [KERNEL_ID_LABEL]: spec.kernelId, "app.kubernetes.io/managed-by": "pybox-serverless" };
  return {
    apiVersion: `${KERNEL_RESOURCE.group}/${KERNEL_RESOURCE.version}`,
    kind: KERNEL_RESOURCE.kind,
    metadata: { name: spec.name, namespace: spec.namespace, labels },
    spec: {
      idleTimeoutSeconds: spec.idleTimeoutSeconds,
      cullingIntervalSeconds: spec.cullingIntervalSeconds,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          containers: [
            {
              name: "main",
              image: spec.image,
              env: Object.entries(env)
                .filter(([key]) => key !== "KERNEL_VOLUMES" && key !== "KERNEL_VOLUME_MOUNTS")
                .map(([name, value]) => ({ name, value })),
              ...(spec.workingDir ? { workingDir: spec.workingDir } : {}),
              ...(volumeMounts.length > 0 ? { volumeMounts } : {}),
            },
          ],
          ...(volumes.length > 0 ? { volumes } : {}),
        },
      },
    },
  };
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
  status: z.object({ conditions: z.array(ConditionSchema).optional() }).optional(),
});

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

/** Why the kernel is not ready, from its status, for an error a caller can act on. */
export function notReadyReason(kernel: KernelObject | undefined): string | undefined {
  const condition = kernel?.status?.conditions?.find((c) => c.type === "Ready" && c.status !== "True");
  if (!condition?.reason && !condition?.message) return undefined;
  return [condition.reason, condition.message].filter(Boolean).join(": ").slice(0, 300);
}
