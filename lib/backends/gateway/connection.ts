import { KernelConnection, KernelMessage } from "@jupyterlab/services";
import type { IKernelConnection } from "@jupyterlab/services/lib/kernel/kernel.js";
import { deferred, within } from "../../async.ts";
import { BackendUnavailableError, KernelDiedError } from "../../errors.ts";
import type { JupyterMessage } from "../../jupyter/messages.ts";
import type { AnswerListener, ExecuteRequest, KernelTransport } from "../../jupyter/transport.ts";
import type { KeptConnections } from "../../kept-connections.ts";
import { logger } from "../../logger.ts";
import { type GatewaySettings, getKernel, interruptKernel, translateGatewayError } from "./api.ts";

/*
 * One websocket to a gateway kernel, for one use: a `KernelConnection` as a `KernelTransport`,
 * watched for the kernel dying, being restarted or vanishing, and for the websocket being lost for
 * longer than a blip. A use that ends well hands its connection to the cache for the next one.
 */

/** Where a gateway kernel is, as the connection needs it. */
export interface GatewayKernel {
  id: string;
  name: string;
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

/** How long the websocket may take to open. */
const OPEN_TIMEOUT_MS = 10_000;

/**
 * A gateway kernel's websocket as a {@link KernelTransport}. Requests go out through the
 * connection's futures, so its routing (display ids among them) is the library's; interrupts go
 * through the gateway's REST endpoint.
 */
export class GatewayTransport implements KernelTransport {
  readonly session: string;
  private readonly listeners = new Map<string, AnswerListener>();
  private sentAny = false;

  constructor(
    /** The open connection, for what only the gateway backend asks of it (info, status). */
    readonly connection: IKernelConnection,
    private readonly settings: GatewaySettings,
    private readonly kernel: GatewayKernel,
    private readonly died: Promise<never>,
  ) {
    this.session = connection.clientId;
  }

  /** True once a request went out: from then a lost connection no longer means "nothing ran". */
  get sent(): boolean {
    return this.sentAny;
  }

  /**
   * Only the websocket is awaited: the server subscribes to iopub before it relays anything we
   * send, and the connection's own kernel_info request is still in flight; a request goes out
   * behind it instead of one gateway round trip later.
   */
  ready(): Promise<void> {
    return connected(this.connection, Date.now() + OPEN_TIMEOUT_MS);
  }

  listen(msgId: string, listener: AnswerListener): () => void {
    this.listeners.set(msgId, listener);
    return () => this.listeners.delete(msgId);
  }

  async send(request: ExecuteRequest): Promise<void> {
    const msgId = request.header.msg_id;
    const message = KernelMessage.createMessage({
      msgType: "execute_request",
      channel: "shell",
      session: this.connection.clientId,
      username: this.connection.username,
      msgId,
      content: request.content,
    });
    const future = this.connection.sendShellMessage(message, true, true);
    this.sentAny = true;
    future.onIOPub = (answer) => this.listeners.get(msgId)?.(answer as unknown as JupyterMessage, "iopub");
    future.onReply = (answer) => this.listeners.get(msgId)?.(answer as unknown as JupyterMessage, "shell");
  }

  /** Through the gateway's REST endpoint, bounded by the settings' request timeout; a failure is logged. */
  async interrupt(): Promise<void> {
    await interruptKernel(this.settings, this.kernel.id).catch((error: unknown) =>
      logger.warn("interrupt failed", { error }),
    );
  }

  death(): Promise<never> {
    return this.died;
  }
}

/**
 * A websocket connection for the duration of `use`, kept from an earlier use when `cache` has a
 * live one, else opened; the transport's `death` rejects with `KernelDiedError` if the kernel
 * dies, is restarted, or vanishes from the gateway meanwhile. A use that succeeds gives the
 * connection back to `cache`; one that fails disposes it. What fails is said in the project's terms.
 */
export async function withConnection<T>(
  kernel: GatewayKernel,
  settings: GatewaySettings,
  use: (transport: GatewayTransport) => Promise<T>,
  cache: KeptConnections<IKernelConnection>,
): Promise<T> {
  const connection = (await cache.take(kernel.id, settings)) ?? openConnection(kernel, settings);
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
    void getKernel(settings, kernel.id).then(
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
  let everConnected = connection.connectionStatus === "connected";
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
    void getKernel(settings, kernel.id).then(
      (model) => {
        if (!model) death.reject(new KernelDiedError("the gateway no longer has this kernel"));
      },
      () => undefined,
    );
  }, MODEL_POLL_MS);
  let succeeded = false;
  try {
    const value = await use(new GatewayTransport(connection, settings, kernel, death.promise));
    succeeded = true;
    return value;
  } catch (error) {
    throw translateGatewayError(error, "run code");
  } finally {
    clearInterval(poll);
    clearTimeout(lost);
    connection.connectionStatusChanged.disconnect(onConnection);
    connection.statusChanged.disconnect(onStatus);
    if (succeeded) cache.keep(kernel.id, connection, settings);
    else connection.dispose();
  }
}

/** A new connection to the kernel; its websocket opens in the background. */
function openConnection(kernel: GatewayKernel, settings: GatewaySettings): IKernelConnection {
  const connection = new KernelConnection({
    model: { id: kernel.id, name: kernel.name },
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
  return connection;
}

/** Waits for the websocket and the kernel's info reply (its readiness handshake), bounded. */
export async function kernelReady(transport: GatewayTransport, deadline: number): Promise<void> {
  await within(
    Promise.race([transport.connection.info, transport.death()]),
    deadline - Date.now(),
    () => new BackendUnavailableError("the gateway kernel did not become ready in time"),
  );
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
