import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { deferred } from "../../async.ts";
import type { ClusterConfig } from "../../config.ts";
import type { RunResult } from "../../core/run-result.ts";
import { BackendError, BackendUnavailableError, KernelLaunchError } from "../../errors.ts";
import { KernelClient } from "../../jupyter/client.ts";
import { ConnectionInfoSchema } from "../../jupyter/connection.ts";
import { evaluate } from "../../jupyter/execution.ts";
import { KernelClients } from "../../jupyter/kept-clients.ts";
import { logger } from "../../logger.ts";
import { kernelUsername } from "../kernel-username.ts";
import { envOnlyPooling } from "../pool-adoption.ts";
import type { Backend, HelperRequest, KernelPooling, RunOptions, StartSpec } from "../port.ts";
import {
  announcedPortClash,
  connectionAnnotation,
  isReady,
  KERNEL_ID_LABEL,
  KERNEL_RESOURCE,
  type KernelObject,
  KernelObjectSchema,
  kernelManifest,
  launchFailure,
  notReadyReason,
  parseAnnouncedConnection,
} from "./kernel-resource.ts";
import { apiStatus, bounded, parseKernel, resource, translateKubeError } from "./kube-api.ts";
import type { KubeClients } from "./kube-auth.ts";

const ClusterRefSchema = z.object({
  backend: z.literal("cluster"),
  id: z.uuid(),
  name: z.string().min(1),
  namespace: z.string().min(1),
  connection: ConnectionInfoSchema,
});

/** Where a cluster kernel lives: its `Kernel` resource and its pod's sockets. */
export type ClusterKernelRef = z.infer<typeof ClusterRefSchema>;

/** Settings of the cluster backend (from `Config.cluster`). */
export interface ClusterBackendOptions {
  clients: () => Promise<KubeClients>;
  namespace: string;
  image: string;
  idleTimeoutSeconds: number;
  cullingIntervalSeconds: number;
  /** Requests and limits of each kernel container. */
  resources: ClusterConfig["resources"];
  /** The kernel pods' ServiceAccount (the monitor's). */
  serviceAccount: string;
  startTimeoutMs: number;
  /** How long a kernel's sockets stay open after a use for the next (`PYBOX_KEEP_CONNECTIONS_MS`); default none. */
  keepConnectionsMs?: number;
}

/**
 * Kernel pods made by jupyter-kernel-controller from a `Kernel` resource. Lifecycle goes through
 * the Kubernetes API; execution goes straight to the pod over ZeroMQ with the connection info the
 * controller annotates, no proxy in between.
 */
export class ClusterBackend implements Backend<ClusterKernelRef> {
  readonly name = "cluster";
  private readonly kept: KernelClients;

  readonly pooling: KernelPooling<ClusterKernelRef>;

  constructor(private readonly options: ClusterBackendOptions) {
    this.kept = new KernelClients(options.keepConnectionsMs ?? 0);
    this.pooling = envOnlyPooling(
      this,
      `cluster:${options.namespace}:${options.image}`,
      "a cluster kernel's working dir is a volume of its pod",
      { ownerEnv: (spec) => ({ KERNEL_USERNAME: kernelUsername(spec.owner) }) },
    );
  }

  parseRef(value: unknown): ClusterKernelRef {
    return ClusterRefSchema.parse(value);
  }

  /**
   * Creates the resource, then waits, by watch, until it is Ready and annotated with its
   * connection, in either order. A launch that does not get there in time is deleted and fails with
   * the pod's reason. Two launches are doomed in ways only we can see, and are deleted and made
   * afresh once, within the same deadline: a pod that was Ready and lost it before any connection
   * was announced lost its monitor (it exits on any API error, a 409 from racing the controller's
   * status write among them, and never retries); a connection that names one port twice comes from
   * a launcher whose kernel failed to bind ({@link announcedPortClash}).
   */
  async start(spec: StartSpec): Promise<ClusterKernelRef> {
    const deadline = Date.now() + this.options.startTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      const launched = await this.launch(spec, deadline);
      if (!("doomed" in launched)) return launched;
      if (attempt >= LAUNCH_ATTEMPTS || Date.now() >= deadline) {
        throw new KernelLaunchError(
          `the kernel could not be launched (${attempt} launches): ${launched.doomed}`,
        );
      }
      logger.warn("kernel launch doomed; launching afresh", { attempt, reason: launched.doomed });
    }
  }

  /** One launch: a new `Kernel`, its readiness, its handshake; or why it can never answer, deleted. */
  private async launch(spec: StartSpec, deadline: number): Promise<ClusterKernelRef | { doomed: string }> {
    const { namespace } = this.options;
    const id = randomUUID();
    const username = kernelUsername(spec.owner);
    const name = `${username}-${id}`;
    const manifest = kernelManifest({
      name,
      namespace,
      kernelId: id,
      username,
      image: this.options.image,
      env: spec.env,
      ...(spec.cwd === undefined ? {} : { workingDir: spec.cwd }),
      idleTimeoutSeconds: this.options.idleTimeoutSeconds,
      cullingIntervalSeconds: this.options.cullingIntervalSeconds,
      resources: this.options.resources,
      serviceAccount: this.options.serviceAccount,
    });
    const { custom } = await this.options.clients();
    try {
      await bounded(
        custom.createNamespacedCustomObject({ ...resource(namespace), body: manifest }),
        "create a kernel",
      );
    } catch (error) {
      if (apiStatus(error) === 404) {
        throw new BackendError("the Kernel resource type or the namespace does not exist in the cluster", {
          cause: error,
        });
      }
      if (apiStatus(error) !== 409) throw translateKubeError(error, "create a kernel");
    }
    let ready: KernelObject | "lost";
    try {
      ready = await this.waitUntilReady(name, deadline);
    } catch (error) {
      await this.deleteQuietly(name, id);
      throw error;
    }
    if (ready === "lost") {
      await this.deleteQuietly(name, id);
      return {
        doomed: "the pod lost readiness before announcing its connection: its monitor sidecar exited",
      };
    }
    const announced = connectionAnnotation(ready) ?? "";
    const clash = announcedPortClash(announced);
    if (clash !== undefined) {
      await this.deleteQuietly(name, id);
      return { doomed: `the kernel launcher announced port ${clash} twice, so the kernel could not bind it` };
    }
    const connection = parseAnnouncedConnection(announced);
    if (!connection) {
      await this.deleteQuietly(name, id);
      throw new BackendError(`kernel ${name} was annotated with an invalid connection`);
    }
    const ref: ClusterKernelRef = { backend: "cluster", id, name, namespace, connection };
    try {
      await this.kept.use(connection, (client) => client.handshake(), {
        handshakeTimeoutMs: Math.max(1, deadline - Date.now()),
      });
    } catch (error) {
      await this.deleteQuietly(name, id);
      throw error;
    }
    logger.info("cluster kernel started", { kernel: name });
    return ref;
  }

  async run(ref: ClusterKernelRef, code: string, options: RunOptions): Promise<RunResult> {
    return this.kept.use(ref.connection, (client) => client.execute(code, options), {
      admitted: options.admitted,
    });
  }

  async helper<T>(ref: ClusterKernelRef, request: HelperRequest<T>): Promise<T> {
    const { code, expression, schema, timeoutMs } = request;
    return this.kept.use(ref.connection, (client) =>
      evaluate(client, expression, schema, { code, timeoutMs }),
    );
  }

  async interrupt(ref: ClusterKernelRef): Promise<void> {
    const client = new KernelClient(ref.connection);
    try {
      await client.interrupt();
    } finally {
      client.close();
    }
  }

  /**
   * The resource must exist and be Ready, still announce the kernel we started, and the pod's
   * heartbeat must answer. The controller replaces a deleted pod under the same Kernel, with a new
   * kernel (new key, often the same IP): that one is not ours, and its state is not the caller's.
   */
  async isAlive(ref: ClusterKernelRef): Promise<boolean> {
    const kernel = await this.get(ref.name);
    if (!kernel || !isReady(kernel)) return false;
    const announced = parseAnnouncedConnection(connectionAnnotation(kernel));
    if (announced && announced.key !== ref.connection.key) return false;
    const client = new KernelClient(ref.connection);
    try {
      for (let attempt = 0; attempt < 3; attempt++) if (await client.ping()) return true;
      return false;
    } finally {
      client.close();
    }
  }

  closeKept(): void {
    this.kept.clear();
  }

  /** Deletes by name, falling back to the kernel-id label; gone already is success. */
  async stop(ref: ClusterKernelRef): Promise<void> {
    this.kept.drop(ref.connection);
    const client = new KernelClient(ref.connection);
    try {
      await client.shutdown(1_000);
    } finally {
      client.close();
    }
    await this.delete(ref.name, ref.id);
    logger.info("cluster kernel stopped", { kernel: ref.name });
  }

  private async get(name: string): Promise<KernelObject | undefined> {
    const { custom } = await this.options.clients();
    try {
      return parseKernel(
        await bounded(
          custom.getNamespacedCustomObject({ ...resource(this.options.namespace), name }),
          "read a kernel",
        ),
      );
    } catch (error) {
      if (apiStatus(error) === 404) return undefined;
      throw translateKubeError(error, "read a kernel");
    }
  }

  private async delete(name: string, id: string): Promise<void> {
    const { custom } = await this.options.clients();
    const namespace = this.options.namespace;
    try {
      await bounded(custom.deleteNamespacedCustomObject({ ...resource(namespace), name }), "delete a kernel");
      return;
    } catch (error) {
      if (apiStatus(error) !== 404) throw translateKubeError(error, "delete a kernel");
    }
    try {
      const list = (await bounded(
        custom.listNamespacedCustomObject({
          ...resource(namespace),
          labelSelector: `${KERNEL_ID_LABEL}=${id}`,
        }),
        "list kernels",
      )) as { items?: unknown[] };
      for (const item of list.items ?? []) {
        const other = parseKernel(item).metadata.name;
        await custom
          .deleteNamespacedCustomObject({ ...resource(namespace), name: other })
          .catch((error: unknown) => {
            if (apiStatus(error) !== 404) throw error;
          });
      }
    } catch (error) {
      throw translateKubeError(error, "delete a kernel");
    }
  }

  private async deleteQuietly(name: string, id: string): Promise<void> {
    await this.delete(name, id).catch((error: unknown) =>
      logger.warn("could not delete kernel", { name, error }),
    );
  }

  /**
   * Waits until the resource is Ready and carries its connection annotation. Each round reads the
   * resource, then watches from its resourceVersion; a watch that drops or expires (410) starts
   * the next round, so nothing between the read and the watch is missed.
   */
  private async waitUntilReady(name: string, deadline: number): Promise<KernelObject | "lost"> {
    let last: KernelObject | undefined;
    const seen = { ready: false };
    let backoffMs = 100;
    while (Date.now() < deadline) {
      let read: KernelObject | undefined;
      try {
        read = await this.get(name);
      } catch (error) {
        // The API server failing a read for a moment (5xx, 429, a dropped connection) is no reason
        // to give up a launch under way: read again, within the start's deadline.
        if (!(error instanceof BackendUnavailableError) || Date.now() + backoffMs >= deadline) throw error;
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2_000);
        continue;
      }
      last = read;
      if (!last) throw new KernelLaunchError(`kernel ${name} disappeared while starting`);
      if (isReady(last) && connectionAnnotation(last) !== undefined) return last;
      failIfHopeless(name, last);
      if (lostBeforeAnnounced(seen, last)) return "lost";
      const began = Date.now();
      const watched = await this.watchUntilReady(name, last.metadata.resourceVersion, deadline, seen);
      if (watched.ready) return watched.ready;
      last = watched.latest ?? last;
      // A watch that ends at once (refused, or the server closing it) must not turn into a hot loop.
      if (Date.now() - began < 1_000) {
        await sleep(Math.min(backoffMs, Math.max(0, deadline - Date.now())));
        backoffMs = Math.min(backoffMs * 2, 2_000);
      } else {
        backoffMs = 100;
      }
    }
    const reason = notReadyReason(last);
    throw new KernelLaunchError(
      `the kernel did not become ready within ${this.options.startTimeoutMs} ms${reason ? ` (${reason})` : ""}`,
    );
  }

  /**
   * One watch from `resourceVersion`: ends with the ready object, or without it when the watch
   * ended (dropped, expired, timed out), carrying the latest state seen for the error message.
   * A watch the API refuses for our credentials is an error, not something to retry.
   */
  private async watchUntilReady(
    name: string,
    resourceVersion: string | undefined,
    deadline: number,
    seen: { ready: boolean },
  ): Promise<{ ready?: KernelObject | "lost"; latest?: KernelObject }> {
    const { watch } = await this.options.clients();
    const outcome = deferred<KernelObject | "lost" | undefined>();
    let latest: KernelObject | undefined;
    const path = `/apis/${KERNEL_RESOURCE.group}/${KERNEL_RESOURCE.version}/namespaces/${this.options.namespace}/${KERNEL_RESOURCE.plural}`;
    const controller = await bounded(
      watch.watch(
        path,
        {
          fieldSelector: `metadata.name=${name}`,
          ...(resourceVersion ? { resourceVersion } : {}),
          timeoutSeconds: Math.max(1, Math.ceil((deadline - Date.now()) / 1000)),
        },
        (phase, object) => {
          if (phase === "DELETED")
            outcome.reject(new KernelLaunchError(`kernel ${name} was deleted while starting`));
          if (phase !== "ADDED" && phase !== "MODIFIED") return;
          const parsed = KernelObjectSchema.safeParse(object);
          if (!parsed.success) return;
          latest = parsed.data;
          if (isReady(parsed.data) && connectionAnnotation(parsed.data) !== undefined)
            outcome.resolve(parsed.data);
          try {
            failIfHopeless(name, parsed.data);
          } catch (error) {
            outcome.reject(error);
          }
          if (lostBeforeAnnounced(seen, parsed.data)) outcome.resolve("lost");
        },
        (error: unknown) => {
          const status = (error as { statusCode?: unknown } | null)?.statusCode;
          if (status === 401 || status === 403) {
            outcome.reject(new BackendError(`the Kubernetes API refused to watch kernels (HTTP ${status})`));
          } else {
            outcome.resolve(undefined);
          }
        },
      ),
      "watch kernels",
      Math.max(1, deadline - Date.now()),
    );
    const timer = new AbortController();
    try {
      const ready = await Promise.race([
        outcome.promise,
        sleep(Math.max(0, deadline - Date.now()), undefined, { signal: timer.signal }).then(() => undefined),
      ]);
      return { ...(ready ? { ready } : {}), ...(latest ? { latest } : {}) };
    } finally {
      timer.abort();
      controller.abort();
    }
  }
}

/** Launches of one start, the first included, when a launch is doomed (see `ClusterBackend.start`). */
const LAUNCH_ATTEMPTS = 2;

/**
 * Ready once and not any more, with no connection announced: a container of the pod died after
 * it started. The kernel's own container is mirrored (and caught by {@link failIfHopeless}); this
 * is the monitor's. Records readiness in `seen` across the reads and watches of one launch.
 */
function lostBeforeAnnounced(seen: { ready: boolean }, kernel: KernelObject): boolean {
  if (connectionAnnotation(kernel) !== undefined) return false;
  if (isReady(kernel)) {
    seen.ready = true;
    return false;
  }
  return seen.ready;
}

/** A start need not wait out its timeout for a pod that will never run. */
function failIfHopeless(name: string, kernel: KernelObject): void {
  const failure = launchFailure(kernel);
  if (failure) throw new KernelLaunchError(`kernel ${name} cannot start: ${failure}`);
}
