import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { KernelMessage } from "@jupyterlab/services";
import { KernelConnection } from "@jupyterlab/services";
import type { IKernelConnection } from "@jupyterlab/services/lib/kernel/kernel.js";
import * as z from "zod";
import { deferred, within } from "../async.ts";
import {
  BackendUnavailableError,
  KernelDiedError,
  KernelStuckError,
  RunOutcomeUnknownError,
} from "../errors.ts";
import type { JupyterMessage } from "../jupyter/messages.ts";
import { executeContent } from "../jupyter/messages.ts";
import { RunCollector, type RunResult } from "../jupyter/run-result.ts";
import { logger } from "../logger.ts";
import {
  type GatewayKernelModel,
  type GatewaySettings,
  getKernel,
  interruptKernel,
  shutdownKernel,
  startKernel,
  translateGatewayError,
} from "./gateway-api.ts";
import { kernelUsername } from "./kernel-username.ts";
import type { Backend, RunOptions, StartSpec } from "./port.ts";

const GatewayRefSchema = z.object({
  backend: z.literal("gateway"),
  /** The gateway's kernel id: a UUID we generated (EG) or the one the server chose. */
  id: z.string().min(1),
  name: z.string().min(1),
});

/** Where a gateway kernel lives: its id on the gateway and its kernelspec. */
export type GatewayKernelRef = z.infer<typeof GatewayRefSchema>;

/** Settings of the gateway backend. */
export interface GatewayBackendOptions {
  /** Builds `@jupyterlab/services` settings once the token is known (read once per container). */
  settings: () => Promise<GatewaySettings>;
  kernelName: string;
  startTimeoutMs: number;
}

/** Statuses a kernel connection reports when the kernel under it died or was replaced. */
const DEATH_STATUSES = new Set(["dead", "restarting", "autorestarting"]);

/** How often a running cell's kernel is looked up on the gateway, to notice it vanished. */
const MODEL_POLL_MS = 2_000;

/**
 * How long a run waits for a lost websocket to come back before it ends with `503`. The connection
 * reconnects on its own (and the gateway replays what the kernel sent meanwhile, so a blip costs
 * nothing); a gateway gone for longer must not hold the caller until the run's timeout.
 */
const CONNECTION_LOSS_GRACE_MS = 5_000;

/** A global that marks a kernel we started; its absence after a run means the gateway restarted it. */
const MARKER = "__pybox_kernel__";

/**
 * Kernels on a Jupyter Enterprise Gateway (or a plain jupyter_server), reached through its REST
 * API and one websocket `KernelConnection` per run, always disposed. The kernel id is ours (a UUID
 * sent as `KERNEL_ID`); the caller becomes a sanitised `KERNEL_USERNAME`, its `cwd` the
 * `KERNEL_WORKING_DIR`. Gateways restart kernels that die: such a restart is reported, never hidden.
 */
export class GatewayBackend implements Backend<GatewayKernelRef> {
  readonly name = "gateway";

  constructor(private readonly options: GatewayBackendOptions) {}

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
    };
    try {
      await this.withConnection(ref, settings, async (connection, died) => {
        await Promise.race([this.ready(connection, Date.now() + this.options.startTimeoutMs), died]);
        await this.execute(connection, `${MARKER} = True`, 10_000);
      });
    } catch (error) {
      await shutdownKernel(settings, ref.id).catch(() => undefined);
      throw error;
    }
    logger.info("gateway kernel started", { kernel: ref.id });
    return ref;
  }

  async run(ref: GatewayKernelRef, code: string, options: RunOptions): Promise<RunResult> {
    const settings = await this.options.settings();
    return this.withConnection(ref, settings, async (connection, died) => {
      const refused = options.admitted?.then(() => new Promise<never>(() => undefined));
      refused?.catch(() => undefined);
      const stops = refused ? [died, refused] : [died];
      // Only the websocket is awaited: the server subscribes to iopub before it relays anything we
      // send, and the connection's own kernel_info request is still in flight; the code goes out
      // behind it instead of one gateway round trip later.
      await Promise.race([connected(connection, Date.now() + 10_000), ...stops]);
      if (options.admitted) await Promise.race([options.admitted, ...stops]);

      const collector = new RunCollector({
        maxOutputBytes: options.maxOutputBytes,
        maxEntryBytes: options.maxOutputEntryBytes,
      });
      const finished = deferred<void>();
      const future = connection.requestExecute(
        { ...executeContent(code), user_expressions: { pybox: `"${MARKER}" in globals()` } },
        true,
      );
      let restarted = false;
      future.onIOPub = (message) => {
        collector.onIopub(message as unknown as JupyterMessage);
        if (collector.done) finished.resolve();
      };
      future.onReply = (reply) => {
        const expressions = (
          reply.content as { user_expressions?: Record<string, { data?: Record<string, unknown> }> }
        ).user_expressions;
        if (expressions?.pybox?.data?.["text/plain"] === "False") restarted = true;
        collector.onReply(reply as unknown as JupyterMessage);
        if (collector.done) finished.resolve();
      };
      const started = performance.now();
      const timer = new AbortController();
      // From here the code is out: a lost connection no longer means "nothing ran".
      const sent = died.catch((error: unknown) => {
        throw error instanceof BackendUnavailableError
          ? new RunOutcomeUnknownError(
              "lost the connection to the gateway after the code was sent; it may have run, so check the kernel's state before running it again",
              { cause: error },
            )
          : error;
      });
      sent.catch(() => undefined);
      try {
        const deadline = sleep(options.timeoutMs, "timeout" as const, { signal: timer.signal }).catch(
          () => "cancelled" as const,
        );
        const outcome = await Promise.race([finished.promise.then(() => "done" as const), deadline, sent]);
        if (outcome === "done") {
          const result = collector.result(elapsed(started));
          if (restarted) {
            void this.execute(connection, `${MARKER} = True`, 5_000).catch(() => undefined);
            return { ...result, restarted: true };
          }
          return result;
        }
        await interruptKernel(settings, ref.id).catch((error: unknown) =>
          logger.warn("interrupt failed", { error }),
        );
        const grace = sleep(options.interruptGraceMs, "grace" as const, { signal: timer.signal }).catch(
          () => "cancelled" as const,
        );
        await Promise.race([finished.promise, grace, sent]);
        const result = collector.result(elapsed(started), options.timeoutMs);
        if (collector.done || collector.replied) return result;
        // Only a kernel we could still hear from can be called stuck; a lost connection is ours.
        if (connection.connectionStatus !== "connected") {
          throw new RunOutcomeUnknownError(
            "lost the connection to the gateway while the timed-out code was being interrupted; check the kernel's state before running it again",
          );
        }
        throw new KernelStuckError("the kernel did not come back from an interrupt", result);
      } finally {
        timer.abort();
      }
    });
  }

  async interrupt(ref: GatewayKernelRef): Promise<void> {
    await interruptKernel(await this.options.settings(), ref.id);
  }

  /** Alive while the gateway has the kernel and does not call it dead; unreachable is an error, not death. */
  async isAlive(ref: GatewayKernelRef): Promise<boolean> {
    const model = await getKernel(await this.options.settings(), ref.id);
    return model !== undefined && model.execution_state !== "dead";
  }

  async stop(ref: GatewayKernelRef): Promise<void> {
    await shutdownKernel(await this.options.settings(), ref.id);
    logger.info("gateway kernel stopped", { kernel: ref.id });
  }

  /**
   * Opens one websocket connection for the duration of `use`, with a promise that rejects with
   * {@link KernelDiedError} if the kernel dies, is restarted, or vanishes from the gateway meanwhile.
   */
  private async withConnection<T>(
    ref: GatewayKernelRef,
    settings: GatewaySettings,
    use: (connection: IKernelConnection, died: Promise<never>) => Promise<T>,
  ): Promise<T> {
    const connection = new KernelConnection({
      model: { id: ref.id, name: ref.name },
      serverSettings: settings,
      handleComms: false,
      username: "pybox",
    });
    // On a kernel restart the connection reconnects on its own, in a promise nobody awaits; when we
    // dispose it mid-way that promise rejects and, unhandled, would take the process down.
    const reconnect = connection.reconnect.bind(connection);
    connection.reconnect = async () => {
      try {
        await reconnect();
      } catch {
        // disposed while reconnecting: nothing to do
      }
    };
    const death = deferred<never>();
    death.promise.catch(() => undefined);
    const onStatus = (_: unknown, status: string) => {
      if (!DEATH_STATUSES.has(status)) return;
      // Dispose at once: the connection's own restart handling would otherwise cancel its pending
      // requests while still alive, and their rejections reach no one.
      connection.dispose();
      if (status !== "dead") {
        death.reject(new KernelDiedError(`the kernel is ${status}`));
        return;
      }
      // The library also says "dead" when its websocket failed for reasons of ours (a rotated
      // token, a proxy error): only the gateway's own word makes it a death.
      void getKernel(settings, ref.id).then(
        (model) =>
          death.reject(
            !model || model.execution_state === "dead"
              ? new KernelDiedError("the gateway reports the kernel dead")
              : new BackendUnavailableError("lost the websocket to the gateway"),
          ),
        (error: unknown) => death.reject(error),
      );
    };
    connection.statusChanged.connect(onStatus);
    let everConnected = false;
    let lost: NodeJS.Timeout | undefined;
    const onConnection = (_: unknown, status: string) => {
      // The first opening is awaited by the caller (`connected`); disposing says "disconnected" too.
      if (connection.isDisposed) return;
      if (status === "connected") {
        everConnected = true;
        clearTimeout(lost);
        lost = undefined;
      } else if (everConnected && status === "disconnected") {
        death.reject(new BackendUnavailableError("lost the websocket to the gateway for good"));
      } else if (everConnected) {
        lost ??= setTimeout(
          () => death.reject(new BackendUnavailableError("lost the websocket to the gateway")),
          CONNECTION_LOSS_GRACE_MS,
        );
      }
    };
    connection.connectionStatusChanged.connect(onConnection);
    const poll = setInterval(() => {
      void getKernel(settings, ref.id).then(
        (model) => {
          if (!model) death.reject(new KernelDiedError("the gateway no longer has this kernel"));
        },
        () => undefined,
      );
    }, MODEL_POLL_MS);
    try {
      return await use(connection, death.promise);
    } catch (error) {
      throw translateGatewayError(error, "run code");
    } finally {
      clearInterval(poll);
      clearTimeout(lost);
      connection.connectionStatusChanged.disconnect(onConnection);
      connection.statusChanged.disconnect(onStatus);
      connection.dispose();
    }
  }

  /** Waits for the websocket and the kernel's info reply (its readiness handshake), bounded. */
  private async ready(connection: IKernelConnection, deadline: number): Promise<void> {
    await within(
      connection.info,
      deadline - Date.now(),
      () => new BackendUnavailableError("the gateway kernel did not become ready in time"),
    );
  }

  /** Runs bookkeeping code of ours (not the caller's), silently. */
  private async execute(connection: IKernelConnection, code: string, timeoutMs: number): Promise<void> {
    const future = connection.requestExecute({ code, silent: true, store_history: false }, true);
    const reply = (await within(
      future.done,
      timeoutMs,
      () => new BackendUnavailableError("the gateway kernel did not answer in time"),
    )) as KernelMessage.IExecuteReplyMsg;
    if (reply.content.status !== "ok")
      throw new BackendUnavailableError("the gateway kernel failed its set-up");
  }
}

/** Resolves once the connection's websocket is open, bounded by `deadline`. */
async function connected(connection: IKernelConnection, deadline: number): Promise<void> {
  if (connection.connectionStatus === "connected") return;
  const opened = deferred<void>();
  const onChange = (_: unknown, status: string) => {
    if (status === "connected") opened.resolve();
    if (status === "disconnected") opened.reject(new BackendUnavailableError("the gateway websocket closed"));
  };
  connection.connectionStatusChanged.connect(onChange);
  try {
    await within(
      opened.promise,
      deadline - Date.now(),
      () => new BackendUnavailableError("the gateway websocket did not open in time"),
    );
  } finally {
    connection.connectionStatusChanged.disconnect(onChange);
  }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
