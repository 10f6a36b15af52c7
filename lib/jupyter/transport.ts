import type { JupyterMessage } from "./messages.ts";

/** What an `execute_request` carries (messaging spec 5.3). */
export interface ExecuteRequestContent {
  code: string;
  /** True for our own helper code: no `execute_input`, no `execute_result`, no history, no `_`. */
  silent: boolean;
  store_history: boolean;
  /** Expressions evaluated after the code, their values returned in the reply. */
  user_expressions: Record<string, string>;
  allow_stdin: boolean;
  stop_on_error: boolean;
}

/** An `execute_request` as the rules of a run build it; `header.msg_id` is fresh for each. */
export type ExecuteRequest = JupyterMessage<ExecuteRequestContent>;

/** Where an answer to a request came from: iopub (status, output) or the request's own reply. */
export type AnswerChannel = "iopub" | "shell";

/** Takes the messages whose parent is one request, in the order the transport received them. */
export type AnswerListener = (message: JupyterMessage, channel: AnswerChannel) => void;

/**
 * A way to one kernel, as the rules of a run (`execution.ts`) drive it: the ZeroMQ sockets of
 * `KernelClient`, or a gateway's websocket. It carries requests and their answers and says when
 * the kernel is gone; when a run is done, what a timeout does and what a result holds are not its
 * business, so every transport runs code by the same rules.
 */
export interface KernelTransport {
  /** The session every request is sent in. */
  readonly session: string;
  /**
   * Resolves once a request sent now will be carried and its answers seen (ZeroMQ: the readiness
   * handshake; a websocket: open). Stops trying when `signal` aborts.
   */
  ready(signal: AbortSignal): Promise<void>;
  /**
   * Hands every message whose `parent_header.msg_id` is `msgId` to `listener`, until the returned
   * function is called. Called before the request is sent, so no early answer is missed.
   */
  listen(msgId: string, listener: AnswerListener): () => void;
  /** Sends an `execute_request` on the shell channel. */
  send(request: ExecuteRequest): Promise<void>;
  /**
   * Asks the kernel to interrupt the running cell (ipykernel ends it with `KeyboardInterrupt`),
   * waiting about `timeoutMs` for the acknowledgement where the transport can bound it.
   */
  interrupt(timeoutMs: number): Promise<void>;
  /**
   * Rejects when the kernel is found dead (`KernelDiedError`) or the way to it is lost for good
   * (`BackendUnavailableError`); never resolves. Watching stops when `signal` aborts, and what it
   * rejects with after that means nothing.
   */
  death(signal: AbortSignal): Promise<never>;
}
