import { randomUUID } from "node:crypto";
import * as z from "zod";
import type { RunResult } from "../../core/run-result.ts";
import {
  BackendUnavailableError,
  KernelCodeError,
  KernelStuckError,
  RunOutcomeUnknownError,
} from "../../errors.ts";
import { evaluate, type RunOutcome, runCode, runSilently } from "../../jupyter/execution.ts";
import { logger } from "../../logger.ts";
import { kernelUsername } from "../kernel-username.ts";
import { adoptionRequest } from "../pool-adoption.ts";
import type { Backend, HelperRequest, KernelPooling, RunOptions, StartSpec } from "../port.ts";
import {
  type GatewayKernelModel,
  type GatewaySettings,
  getKernel,
  interruptKernel,
  kernelSpecProxy,
  shutdownKernel,
  startKernel,
} from "./api.ts";
import { type GatewayTransport, kernelReady, withConnection } from "./connection.ts";
import { gatewayConnections } from "./connection-cache.ts";
import { enterWorkingDir } from "./working-dir.ts";

const GatewayRefSchema = z.object({
  backend: z.literal("gateway"),
  /** The gateway's kernel id: a UUID we generated (EG) or the one the server chose. */
  id: z.string().min(1),
  name: z.string().min(1),
  /** The caller's working directory, entered again when the gateway restarts the kernel. */
  cwd: z.string().min(1).optional(),
  /**
   * Variables a pooled kernel was given when its caller adopted it: a restart by the gateway
   * relaunches it with the pool's launch env, so they are given again.
   */
  adoptedEnv: z.record(z.string(), z.string()).optional(),
});

/** Where a gateway kernel lives: its id on the gateway, its kernelspec and its working directory. */
export type GatewayKernelRef = z.infer<typeof GatewayRefSchema>;

/** Settings of the gateway backend. */
export interface GatewayBackendOptions {
  /** Builds `@jupyterlab/services` settings once the token is known (read once per container). */
  settings: () => Promise<GatewaySettings>;
  kernelName: string;
  startTimeoutMs: number;
  /** Make a caller's `cwd` missing on the kernel's host, rather than refuse it (`PYBOX_GATEWAY_CREATE_CWD`). */
  createCwd: boolean;
  /** How long a kernel's websocket stays open for its next run (`PYBOX_KEEP_CONNECTIONS_MS`); 0 never. */
  keepConnectionsMs: number;
}

/** Bound on proving a kept websocket alive before a run uses it; past it, a new one is opened. */
const KEPT_WEBSOCKET_PROBE_MS = 1_000;

/** Bound on the set-up requests of a kernel just started. */
const SETUP_TIMEOUT_MS = 10_000;

/** Bound on setting up again a kernel the gateway restarted, which holds the caller's answer. */
const RESTART_SETUP_TIMEOUT_MS = 5_000;

/** A global that marks a kernel we started; its absence after a run means the gateway restarted it. */
const MARKER = "__pybox_kernel__";

/** Process proxies that run each kernel in a container of its own (EG's and its custom ones). */
const ISOLATING_PROXY = /(Kubernetes|Docker|DockerSwarm|Container|CustomResource|SparkOperator)ProcessProxy$/;

/**
 * Kernels on a Jupyter Enterprise Gateway (or a plain jupyter_server), reached through its REST
 * API and a websocket `KernelConnection` per kernel, kept open between runs for a while. The
 * kernel id is ours (a UUID sent as `KERNEL_ID`); the caller becomes a sanitised `KERNEL_USERNAME`, its `cwd` the
 * `KERNEL_WORKING_DIR`, and, for gateways that ignore it, the directory the kernel is moved to.
 * Gateways restart kernels that die: such a restart is reported, never hidden.
 */
export class GatewayBackend implements Backend<GatewayKernelRef> {
  readonly name = "gateway";
  private readonly connections: ReturnType<typeof gatewayConnections>;

  readonly pooling: KernelPooling<GatewayKernelRef>;

  constructor(private readonly options: GatewayBackendOptions) {
    this.connections = gatewayConnections({
      maxIdleMs: options.keepConnectionsMs,
      probeTimeoutMs: KEPT_WEBSOCKET_PROBE_MS,
    });
    this.pooling = {
      key: `gateway:${options.kernelName}`,
      refusal: () => undefined,
      adopt: (ref, spec) => this.adopt(ref, spec),
    };
  }

  parseRef(value: unknown): GatewayKernelRef {
    return GatewayRefSchema.parse(value);
  }

  async start(spec: StartSpec): Promise<GatewayKernelRef> {
    const settings = await this.options.settings();
    const id = randomUUID();
    const env: Record<string, string> = {
      KERNEL_LAUNCH_TIMEOUT: String(Math.ceil(this.options.startTimeoutMs / 1000)),
      ...spec.env,
      KERNEL_ID: id,
      KERNEL_USERNAME: kernelUsername(spec.owner),
      ...(spec.cwd === undefined ? {} : { KERNEL_WORKING_DIR: spec.cwd }),
    };
    let model: GatewayKernelModel;
    try {
      model = await startKernel(
        settings,
        { name: this.options.kernelName, env, kernel_id: id },
        this.options.startTimeoutMs,
      );
    } catch (error) {
      // The launch may go on after we gave up: stop the kernel we named, in case it comes up.
      if (error instanceof BackendUnavailableError) void shutdownKernel(settings, id).catch(() => undefined);
      throw error;
    }
    const ref: GatewayKernelRef = {
      backend: "gateway",
      id: model.id,
      name: model.name || this.options.kernelName,
      ...(spec.cwd === undefined ? {} : { cwd: spec.cwd }),
    };
    try {
      await withConnection(
        ref,
        settings,
        async (transport) => {
          await kernelReady(transport, Date.now() + this.options.startTimeoutMs);
          await this.setUp(transport, spec.cwd, SETUP_TIMEOUT_MS);
        },
        this.connections,
      );
    } catch (error) {
      await shutdownKernel(settings, ref.id).catch(() => undefined);
      throw error;
    }
    logger.info("gateway kernel started", { kernel: ref.id });
    return ref;
  }

  async run(ref: GatewayKernelRef, code: string, options: RunOptions): Promise<RunResult> {
    const settings = await this.options.settings();
    return withConnection(
      ref,
      settings,
      async (transport) => {
        let outcome: RunOutcome;
        try {
          outcome = await runCode(transport, code, {
            ...options,
            userExpressions: { pybox: `"${MARKER}" in globals()` },
          });
        } catch (error) {
          throw inGatewayTerms(error, transport);
        }
        const { result, expressions } = outcome;
        const marker = expressions.pybox;
        // A run that ended on its own in a kernel without our marker ran in one the gateway restarted.
        if (result.status !== "timeout" && marker?.status === "ok" && marker.data["text/plain"] === "False") {
          await this.setUp(transport, ref.cwd, RESTART_SETUP_TIMEOUT_MS, ref.adoptedEnv).catch(
            (error: unknown) =>
              logger.warn("could not set up the restarted kernel", { kernel: ref.id, error }),
          );
          return { ...result, restarted: true };
        }
        return result;
      },
      this.connections,
    );
  }

  /**
   * Over one websocket, as a run. A 4 MiB chunk goes out as a message of about 5.6 MB, under
   * tornado's default `websocket_max_message_size` (10 MiB) that jupyter_server and EG apply to
   * what clients send; what comes back is bounded by `ws`'s 100 MiB `maxPayload`.
   */
  async helper<T>(ref: GatewayKernelRef, request: HelperRequest<T>): Promise<T> {
    const { code, expression, schema, timeoutMs } = request;
    return withConnection(
      ref,
      await this.options.settings(),
      (transport) => evaluate(transport, expression, schema, { code, timeoutMs }),
      this.connections,
    );
  }

  /**
   * Enterprise Gateway isolates callers only when a container process proxy (Kubernetes, Docker,
   * a custom resource) runs the kernelspec's kernels; with a local (or SSH-distributed) one, or on
   * a plain jupyter_server, every kernel is a process of the gateway's own user on a shared host.
   */
  async sharedHost(): Promise<string | undefined> {
    const proxy = await kernelSpecProxy(await this.options.settings(), this.options.kernelName);
    if (proxy && ISOLATING_PROXY.test(proxy)) return undefined;
    const runner = proxy ? proxy.split(".").at(-1) : "no process proxy";
    return `the gateway runs kernelspec '${this.options.kernelName}' (${runner}) as processes of its own user on one host`;
  }

  async interrupt(ref: GatewayKernelRef): Promise<void> {
    await interruptKernel(await this.options.settings(), ref.id);
  }

  /** Alive while the gateway has the kernel and does not call it dead; unreachable is an error, not death. */
  async isAlive(ref: GatewayKernelRef): Promise<boolean> {
    const model = await getKernel(await this.options.settings(), ref.id);
    return model !== undefined && model.execution_state !== "dead";
  }

  closeKept(): void {
    this.connections.clear();
  }

  async stop(ref: GatewayKernelRef): Promise<void> {
    this.connections.drop(ref.id);
    await shutdownKernel(await this.options.settings(), ref.id);
    logger.info("gateway kernel stopped", { kernel: ref.id });
  }

  /**
   * Hands a pooled kernel to its caller: the owner's and the start's variables, then its `cwd`,
   * entered as a cold start's set-up would (the marker is there since the pool's start).
   */
  private async adopt(ref: GatewayKernelRef, spec: StartSpec): Promise<GatewayKernelRef> {
    const { cwd } = spec;
    const env = {
      ...spec.env,
      KERNEL_USERNAME: kernelUsername(spec.owner),
      ...(cwd === undefined ? {} : { KERNEL_WORKING_DIR: cwd }),
    };
    const before = adoptionRequest(env).code;
    await withConnection(
      ref,
      await this.options.settings(),
      async (transport) => {
        if (cwd !== undefined) {
          await enterWorkingDir(transport, cwd, {
            before,
            create: this.options.createCwd,
            timeoutMs: SETUP_TIMEOUT_MS,
          });
        } else await runSilently(transport, before, { timeoutMs: SETUP_TIMEOUT_MS });
      },
      this.connections,
    );
    return { ...ref, ...(cwd === undefined ? {} : { cwd }), adoptedEnv: env };
  }

  /**
   * Marks the kernel as ours and, when a `cwd` was asked for, puts it there (see `working-dir.ts`),
   * in silent requests that count as no run.
   */
  private async setUp(
    transport: GatewayTransport,
    cwd: string | undefined,
    timeoutMs: number,
    adoptedEnv?: Record<string, string>,
  ): Promise<void> {
    const marking = [...(adoptedEnv ? [adoptionRequest(adoptedEnv).code] : []), `${MARKER} = True`].join(
      "\n",
    );
    try {
      if (cwd === undefined) await runSilently(transport, marking, { timeoutMs });
      else
        await enterWorkingDir(transport, cwd, { before: marking, create: this.options.createCwd, timeoutMs });
    } catch (error) {
      if (error instanceof KernelCodeError) {
        throw new BackendUnavailableError("the gateway kernel failed its set-up", { cause: error });
      }
      throw error;
    }
  }
}

/**
 * Losing the gateway after the code went out is not "nothing ran": the outcome is unknown. And
 * only a kernel we could still hear from can be called stuck; a lost connection is ours.
 */
function inGatewayTerms(error: unknown, transport: GatewayTransport): unknown {
  if (error instanceof KernelStuckError && transport.connection.connectionStatus !== "connected") {
    return new RunOutcomeUnknownError(
      "lost the connection to the gateway while the timed-out code was being interrupted; check the kernel's state before running it again",
    );
  }
  if (error instanceof BackendUnavailableError && transport.sent) {
    return new RunOutcomeUnknownError(
      "lost the connection to the gateway after the code was sent; it may have run, so check the kernel's state before running it again",
      { cause: error },
    );
  }
  return error;
}
