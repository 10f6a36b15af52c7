import { URLExt } from "@jupyterlab/coreutils";
import { KernelAPI, KernelSpecAPI, ServerConnection } from "@jupyterlab/services";
import WebSocket from "ws";
import * as z from "zod";
import {
  BackendError,
  BackendUnavailableError,
  CapacityError,
  CredentialsRejectedError,
  KernelDiedError,
  PyboxError,
} from "../../errors.ts";
import { logger } from "../../logger.ts";

/** A kernel as the gateway describes it, checked where it enters. */
export const KernelModelSchema = z.object({
  id: z.string().min(1),
  name: z.string(),
  execution_state: z.string().optional(),
});

/** A kernel model the gateway returned. */
export type GatewayKernelModel = z.infer<typeof KernelModelSchema>;

/** What `POST /api/kernels` is sent: the kernelspec and the environment (EG honours `KERNEL_*`). */
export interface StartKernelBody {
  name: string;
  env: Record<string, string>;
  /** jupyter_server 2.x honours a requested id; Enterprise Gateway takes it from `env.KERNEL_ID`. */
  kernel_id: string;
}

/**
 * `@jupyterlab/services` settings for one gateway: Node's `fetch` with a per-request timeout, and
 * a `ws` WebSocket that sends the token as a header (never in the URL, where proxies log it).
 */
export function gatewaySettings(url: string, token: string | undefined, timeoutMs: number) {
  const headers: Record<string, string> = token ? { Authorization: `token ${token}` } : {};
  /**
   * `KernelConnection` validates every message inside the socket's handlers and rethrows what it
   * rejects; in `ws` that is an uncaught exception, so a cell sending an odd message (say
   * `clear_output(wait=1)`) could end the process. Handlers run guarded here: such a message is
   * dropped and logged.
   */
  class AuthenticatedWebSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers });
      quickAck(this);
      for (const name of ["onmessage", "onopen"] as const) {
        const accessor = Object.getOwnPropertyDescriptor(WebSocket.prototype, name);
        if (!accessor?.get || !accessor.set) continue;
        const { get, set } = accessor;
        Object.defineProperty(this, name, {
          configurable: true,
          get: () => get.call(this),
          set: (handler: ((event: unknown) => void) | null) => set.call(this, guarded(handler)),
        });
      }
    }
  }
  const timedFetch: typeof fetch = (input, init) =>
    fetch(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(timeoutMs) });
  return ServerConnection.makeSettings({
    baseUrl: url,
    wsUrl: url.replace(/^http/, "ws"),
    token: token ?? "",
    appendToken: false,
    fetch: timedFetch,
    WebSocket: AuthenticatedWebSocket as unknown as typeof globalThis.WebSocket,
  });
}

/**
 * Answers every frame the gateway sends with an unsolicited pong (RFC 6455 allows one; servers
 * ignore it). Tornado leaves Nagle on, so a frame that follows an unacknowledged one waits for our
 * ACK, which delayed ACK holds back ~40 ms; the pong carries the ACK at once. A run's reply, its
 * status and its output are such back-to-back small frames: this takes the ~45 ms floor off each run.
 */
export function quickAck(socket: WebSocket): void {
  socket.on("message", () => {
    if (socket.readyState === WebSocket.OPEN) socket.pong();
  });
}

function guarded<E>(handler: ((event: E) => void) | null): ((event: E) => void) | null {
  if (!handler) return handler;
  return (event) => {
    try {
      handler(event);
    } catch (error) {
      logger.warn("dropped a gateway message the kernel connection rejected", { error: error as Error });
    }
  };
}

/** Settings as `@jupyterlab/services` takes them. */
export type GatewaySettings = ServerConnection.ISettings;

/** Starts a kernel; a gateway that says it exists already (EG's 500 "Kernel already exists") yields that kernel. */
export async function startKernel(
  settings: GatewaySettings,
  body: StartKernelBody,
  timeoutMs: number,
): Promise<GatewayKernelModel> {
  let response: Response;
  try {
    // A remote launch (a pod, a YARN container) answers only once the kernel is up: this request
    // gets the start's whole budget, not the per-call timeout. The budget goes to the fetch itself:
    // `makeRequest` wraps the call in a `Request` and calls `fetch(request)`, and the settings'
    // fetch would put its per-call timeout on any request that comes without a signal of its own.
    const launch: GatewaySettings = {
      ...settings,
      fetch: (input, init) => settings.fetch(input, { ...init, signal: AbortSignal.timeout(timeoutMs) }),
    };
    response = await ServerConnection.makeRequest(
      URLExt.join(settings.baseUrl, "api/kernels"),
      { method: "POST", body: JSON.stringify(body) },
      launch,
    );
  } catch (error) {
    throw translateGatewayError(error, "start a kernel");
  }
  if (response.ok) return parseModel(await response.json().catch(() => undefined));
  const failure = GatewayFailureSchema.catch({}).parse(await response.json().catch(() => ({})));
  if (response.status === 500 && /Kernel already exists/i.test(failure.traceback ?? failure.message ?? "")) {
    const model = await getKernel(settings, body.kernel_id);
    if (!model) throw new BackendError("the gateway says the kernel exists but cannot find it");
    return model;
  }
  if (response.status === 403) {
    const said = [failure.reason, failure.message].find((text) => text && text !== "Forbidden");
    throw new CapacityError(said ?? "the gateway refused a new kernel: resource limits reached", {
      retryAfterSeconds: 10,
    });
  }
  // No kernel existed yet, so a 404 here means the URL has no kernels API: misconfiguration, not a death.
  if (response.status === 404) throw new BackendError("the gateway has no kernels API at the configured URL");
  throw translateStatus(response.status, "start a kernel");
}

/** EG's error body: `{reason, message[, traceback]}`. The traceback is read here and never passed on. */
const GatewayFailureSchema = z.object({
  reason: z.string().optional(),
  message: z.string().optional(),
  traceback: z.string().optional(),
});

/** The kernel's model, or undefined when the gateway no longer has it (a 404 is a value here). */
export async function getKernel(
  settings: GatewaySettings,
  id: string,
): Promise<GatewayKernelModel | undefined> {
  try {
    const model = await KernelAPI.getKernelModel(id, settings);
    return model === undefined ? undefined : parseModel(model);
  } catch (error) {
    throw translateGatewayError(error, "read a kernel");
  }
}

/** Interrupts the kernel through the gateway's REST endpoint. */
export async function interruptKernel(settings: GatewaySettings, id: string): Promise<void> {
  try {
    await KernelAPI.interruptKernel(id, settings);
  } catch (error) {
    throw translateGatewayError(error, "interrupt a kernel");
  }
}

/** Shuts the kernel down; one the gateway does not know is gone already, which is success. */
export async function shutdownKernel(settings: GatewaySettings, id: string): Promise<void> {
  try {
    await KernelAPI.shutdownKernel(id, settings);
  } catch (error) {
    const translated = translateGatewayError(error, "shut a kernel down");
    if (translated instanceof KernelDiedError) return;
    throw translated;
  }
}

/** What of a kernelspec tells how EG runs its kernels: `metadata.process_proxy.class_name`. */
const KernelSpecProxySchema = z.object({
  metadata: z
    .object({ process_proxy: z.object({ class_name: z.string() }).partial().optional() })
    .loose()
    .nullish(),
});

/**
 * The process proxy class that runs the kernelspec's kernels (EG's `/api/kernelspecs`), or
 * undefined when it names none (EG then runs them as local processes; a plain jupyter_server
 * always does). A kernelspec the gateway does not have is a {@link BackendError}.
 */
export async function kernelSpecProxy(settings: GatewaySettings, name: string): Promise<string | undefined> {
  let specs: Awaited<ReturnType<typeof KernelSpecAPI.getSpecs>>;
  try {
    specs = await KernelSpecAPI.getSpecs(settings);
  } catch (error) {
    throw translateGatewayError(error, "read its kernelspecs");
  }
  const spec = specs.kernelspecs[name];
  if (!spec) throw new BackendError(`the gateway has no kernelspec '${name}'`);
  const parsed = KernelSpecProxySchema.safeParse(spec);
  if (!parsed.success) throw new BackendError(`the gateway's kernelspec '${name}' is malformed`);
  return parsed.data.metadata?.process_proxy?.class_name;
}

function parseModel(value: unknown): GatewayKernelModel {
  const parsed = KernelModelSchema.safeParse(value);
  if (!parsed.success) throw new BackendError("the gateway answered with a malformed kernel model");
  return parsed.data;
}

/**
 * The gateway's answers in the project's terms. Its `message` is shown only where it is meant for
 * the caller (resource limits); its tracebacks never leave this function.
 */
export function translateGatewayError(error: unknown, doing: string): PyboxError {
  if (error instanceof PyboxError) return error;
  if (error instanceof ServerConnection.ResponseError)
    return translateStatus(error.response.status, doing, error);
  return new BackendUnavailableError(`the gateway could not be reached to ${doing}`, {
    cause: error,
    retryAfterSeconds: 5,
  });
}

function translateStatus(status: number, doing: string, cause?: unknown): PyboxError {
  if (status === 404) return new KernelDiedError("the gateway no longer has this kernel", { cause });
  if (status === 401) return new CredentialsRejectedError("the gateway rejected our credentials", { cause });
  if (status === 403) return new BackendError(`the gateway refused to ${doing} (HTTP 403)`, { cause });
  if (status === 502 || status === 503 || status === 504) {
    return new BackendUnavailableError(`the gateway could not ${doing} (HTTP ${status})`, { cause });
  }
  return new BackendError(`the gateway failed to ${doing} (HTTP ${status})`, { cause });
}
