import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Dealer, Request, Subscriber } from "zeromq";
import { deferred } from "../async.ts";
import type { RunResult } from "../core/run-result.ts";
import { BackendUnavailableError, InvalidMessageError, KernelDiedError } from "../errors.ts";
import { type Channel, type ConnectionInfo, channelUrl } from "./connection.ts";
import { type ExecutionOptions, runCode } from "./execution.ts";
import { createMessage, type JupyterMessage } from "./messages.ts";
import type { AnswerListener, ExecuteRequest, KernelTransport } from "./transport.ts";
import { deserialize, serialize } from "./wire.ts";

/** Tunables of the liveness watch; defaults suit a kernel on the same host or in the same VPC. */
export interface ClientOptions {
  /** Bound on the readiness handshake. */
  handshakeTimeoutMs?: number;
  /** Heartbeat period while a run is in flight. */
  heartbeatIntervalMs?: number;
  /** How long one heartbeat may take. */
  heartbeatTimeoutMs?: number;
  /** Consecutive lost heartbeats that mean the kernel is dead. */
  heartbeatMisses?: number;
}

type Handler = (message: JupyterMessage) => void;

/** After the kernel's connection dropped: how long one heartbeat may take, and how many may fail. */
const SUSPECT_PING_MS = 500;
const SUSPECT_MISSES = 2;
/** When a run starts watching its shell socket's connection events. */
const OBSERVE_AFTER_MS = 250;

const DEFAULTS: Required<ClientOptions> = {
  handshakeTimeoutMs: 10_000,
  heartbeatIntervalMs: 1_000,
  heartbeatTimeoutMs: 1_500,
  heartbeatMisses: 3,
};

/**
 * A ZeroMQ client for one kernel, and the {@link KernelTransport} that the rules of a run
 * (`execution.ts`) drive for the local and cluster backends: open, handshake once, run, and close,
 * or be kept for the kernel's next run in a warm instance (`kept-clients.ts`).
 *
 * Each socket has exactly one reader loop that dispatches by `parent_header.msg_id` (zeromq allows
 * one pending receive per socket); messages that fail HMAC verification are dropped.
 */
export class KernelClient implements KernelTransport {
  readonly session = randomUUID();
  private readonly shell = new Dealer({ linger: 0 });
  private readonly control = new Dealer({ linger: 1_000 });
  private readonly iopub = new Subscriber({ linger: 0 });
  private readonly replyHandlers = new Map<string, Handler>();
  private readonly iopubHandlers = new Map<string, Handler>();
  private readonly options: Required<ClientOptions>;
  private heartbeat: Request | undefined;
  private iopubSeen = false;
  private readonly iopubArrived = deferred<void>();
  private handshaken = false;
  private closed = false;
  private failed = false;
  /** Rejects if a reader loop dies while the client is open; every wait races it. */
  private readonly broken = deferred<never>();
  /** Messages dropped because they were not authentic or not decodable. */
  rejectedMessages = 0;

  constructor(
    private readonly info: ConnectionInfo,
    options: ClientOptions = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
    try {
      connect(this.shell, channelUrl(info, "shell"));
      connect(this.control, channelUrl(info, "control"));
      connect(this.iopub, channelUrl(info, "iopub"));
    } catch (cause) {
      this.close();
      throw new BackendUnavailableError("could not connect to the kernel's sockets", { cause });
    }
    this.broken.promise.catch(() => undefined);
    this.iopub.subscribe();
    void this.readLoop(this.shell, "shell");
    void this.readLoop(this.control, "control");
    void this.readLoop(this.iopub, "iopub");
  }

  /**
   * Waits until the kernel answers *and* our iopub subscription has landed: a fresh subscriber
   * misses messages until then, so we resend `kernel_info_request` until both hold. It goes on the
   * control channel, which ipykernel serves on its own thread, so a cell still running on shell
   * (the previous run's, while we wait for the lease) does not hold the handshake up.
   */
  async handshake(signal?: AbortSignal): Promise<Record<string, unknown>> {
    const deadline = Date.now() + this.options.handshakeTimeoutMs;
    let probeMs = 5;
    let replyWaitMs = 250;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new BackendUnavailableError("kernel did not answer the readiness handshake in time");
      let reply: JupyterMessage;
      try {
        reply = await this.request(
          "control",
          "kernel_info_request",
          {},
          Math.min(remaining, replyWaitMs),
          signal,
        );
      } catch (error) {
        // A request that reached a kernel still wiring up its streams can sit unread until the
        // next message wakes the socket: resend rather than wait out the whole deadline.
        if (!(error instanceof BackendUnavailableError) || signal?.aborted) throw error;
        replyWaitMs = Math.min(replyWaitMs * 2, 2_000);
        continue;
      }
      if (!this.iopubSeen)
        await this.waitForIopub(Math.min(probeMs, Math.max(0, deadline - Date.now())), signal);
      if (this.iopubSeen) {
        this.handshaken = true;
        return reply.content;
      }
      probeMs = Math.min(probeMs * 2, 200);
    }
  }

  /**
   * Runs code and collects what it displayed, by the rules of `execution.ts`: at the deadline the
   * kernel is interrupted (control channel) and the result says `timeout`; a kernel that does not
   * come back within the grace ends the run with `KernelStuckError`, and one that stops answering
   * heartbeats, or whose death the caller signals, ends it at once with `KernelDiedError`.
   */
  async execute(code: string, options: ExecutionOptions): Promise<RunResult> {
    return (await runCode(this, code, options)).result;
  }

  /** Runs the readiness handshake once per client; later requests need none. */
  async ready(signal: AbortSignal): Promise<void> {
    if (!this.handshaken) await this.handshake(signal);
  }

  /** Routes the shell replies and iopub messages of request `msgId` to `listener`. */
  listen(msgId: string, listener: AnswerListener): () => void {
    this.replyHandlers.set(msgId, (message) => listener(message, "shell"));
    this.iopubHandlers.set(msgId, (message) => listener(message, "iopub"));
    return () => {
      this.replyHandlers.delete(msgId);
      this.iopubHandlers.delete(msgId);
    };
  }

  /** Signs and sends an `execute_request` on the shell channel. */
  async send(request: ExecuteRequest): Promise<void> {
    await this.shell.send(serialize(request, this.info.key));
  }

  /** The liveness watch (heartbeats, socket events) raced with a reader loop failing. */
  death(signal: AbortSignal): Promise<never> {
    return Promise.race([this.watchLiveness(signal), this.broken.promise]);
  }

  /** Interrupts the running cell (ipykernel ends it with `KeyboardInterrupt`). */
  async interrupt(timeoutMs = 2_000): Promise<void> {
    await this.request("control", "interrupt_request", {}, timeoutMs);
  }

  /** Asks the kernel to exit; resolves when it acknowledged or the wait ran out. */
  async shutdown(timeoutMs = 2_000): Promise<boolean> {
    try {
      await this.request("control", "shutdown_request", { restart: false }, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  /** One heartbeat round trip: true when the kernel's heartbeat echoed within the time. */
  async ping(timeoutMs = this.options.heartbeatTimeoutMs): Promise<boolean> {
    if (this.closed) return false;
    if (!this.heartbeat) {
      this.heartbeat = new Request({ linger: 0, relaxed: true, correlate: true });
      connect(this.heartbeat, channelUrl(this.info, "hb"));
    }
    const socket = this.heartbeat;
    socket.receiveTimeout = timeoutMs;
    socket.sendTimeout = timeoutMs;
    const token = Buffer.from(randomUUID());
    try {
      await socket.send(token);
      const [echo] = await socket.receive();
      return echo?.equals(token) ?? false;
    } catch {
      return false;
    }
  }

  /** Open, and no reader loop has failed: fit to be kept for another run. */
  get isOpen(): boolean {
    return !this.closed && !this.failed;
  }

  /** Closes every socket; pending waits end with an error. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of [this.shell, this.control, this.iopub, this.heartbeat]) socket?.close();
    this.replyHandlers.clear();
    this.iopubHandlers.clear();
  }

  private async request(
    channel: "shell" | "control",
    msgType: string,
    content: object,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<JupyterMessage> {
    const message = createMessage(msgType, content, this.session);
    const msgId = message.header.msg_id;
    const reply = deferred<JupyterMessage>();
    this.replyHandlers.set(msgId, reply.resolve);
    const timer = new AbortController();
    const abort = signal ? AbortSignal.any([signal, timer.signal]) : timer.signal;
    try {
      await (channel === "shell" ? this.shell : this.control).send(serialize(message, this.info.key));
      const timeout = sleep(timeoutMs, undefined, { signal: abort }).then(
        () => {
          throw new BackendUnavailableError(`kernel did not answer ${msgType} within ${timeoutMs} ms`);
        },
        () => {
          throw signal?.reason instanceof Error ? signal.reason : new KernelDiedError(`${msgType} abandoned`);
        },
      );
      return await Promise.race([reply.promise, timeout, this.broken.promise]);
    } finally {
      timer.abort();
      this.replyHandlers.delete(msgId);
    }
  }

  private async waitForIopub(ms: number, signal?: AbortSignal): Promise<void> {
    const timer = new AbortController();
    const abort = signal ? AbortSignal.any([signal, timer.signal]) : timer.signal;
    const timeout = sleep(ms, undefined, { signal: abort }).catch(() => undefined);
    await Promise.race([this.iopubArrived.promise, timeout]);
    timer.abort();
  }

  /**
   * Rejects with {@link KernelDiedError} when heartbeats stop or `signal` fires for a death. When
   * the shell connection drops or is refused (a kernel that exits closes its sockets), the
   * heartbeat is checked at once with a short timeout, so a dead kernel is noticed in about a
   * second, not a few.
   */
  private async watchLiveness(signal: AbortSignal): Promise<never> {
    const { heartbeatIntervalMs, heartbeatTimeoutMs, heartbeatMisses } = this.options;
    let misses = 0;
    let suspect = false;
    let wake = deferred<void>();
    const onDisconnect = () => {
      suspect = true;
      wake.resolve();
    };
    let observing = false;
    try {
      // Watching socket events costs a monitor socket; a run that ends quickly never needs it, and
      // a dead peer keeps producing `connect:retry` events for a watcher that arrives later.
      try {
        await sleep(Math.min(OBSERVE_AFTER_MS, heartbeatIntervalMs), undefined, { signal });
      } catch {
        throw signal.reason instanceof KernelDiedError ? signal.reason : new KernelDiedError("run ended");
      }
      this.shell.events.on("disconnect", onDisconnect);
      this.shell.events.on("connect:retry", onDisconnect);
      observing = true;
      for (;;) {
        try {
          await Promise.race([sleep(heartbeatIntervalMs, undefined, { signal }), wake.promise]);
        } catch {
          throw signal.reason instanceof KernelDiedError ? signal.reason : new KernelDiedError("run ended");
        }
        if (signal.aborted)
          throw signal.reason instanceof KernelDiedError ? signal.reason : new KernelDiedError("run ended");
        if (suspect) wake = deferred<void>();
        if (await this.ping(suspect ? SUSPECT_PING_MS : heartbeatTimeoutMs)) {
          misses = 0;
          suspect = false;
        } else if (++misses >= (suspect ? SUSPECT_MISSES : heartbeatMisses)) {
          throw new KernelDiedError("the kernel stopped answering heartbeats");
        } else if (suspect) {
          wake.resolve();
        }
      }
    } finally {
      if (observing) {
        this.shell.events.off("disconnect", onDisconnect);
        this.shell.events.off("connect:retry", onDisconnect);
      }
    }
  }

  private async readLoop(socket: Dealer | Subscriber, channel: Channel): Promise<void> {
    try {
      for await (const frames of socket) {
        this.dispatch(channel, frames);
      }
    } catch (cause) {
      this.failed = true;
      if (!this.closed)
        this.broken.reject(new BackendUnavailableError(`the ${channel} channel failed`, { cause }));
    }
  }

  private dispatch(channel: Channel, frames: Buffer[]): void {
    let message: JupyterMessage;
    try {
      message = deserialize(frames, this.info.key);
    } catch (error) {
      if (error instanceof InvalidMessageError) {
        this.rejectedMessages++;
        return;
      }
      throw error;
    }
    const parentId = message.parent_header.msg_id;
    if (channel === "iopub") {
      if (!this.iopubSeen) {
        this.iopubSeen = true;
        this.iopubArrived.resolve();
      }
      if (parentId) this.iopubHandlers.get(parentId)?.(message);
      return;
    }
    if (parentId) this.replyHandlers.get(parentId)?.(message);
  }
}

/** `connect` may fail with EINTR when a signal lands mid-call (profilers, SIGCHLD); it is safe to retry. */
function connect(socket: Dealer | Subscriber | Request, url: string): void {
  for (let attempt = 1; ; attempt++) {
    try {
      socket.connect(url);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EINTR" || attempt >= 5) throw error;
    }
  }
}
