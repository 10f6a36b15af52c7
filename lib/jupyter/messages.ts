import { randomUUID } from "node:crypto";

/** The header every Jupyter message carries (messaging spec 5.3). */
export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  session: string;
  username: string;
  date: string;
  version: string;
}

/** A decoded Jupyter message; `content` stays unknown until the reader of a given type checks it. */
export interface JupyterMessage<C = Record<string, unknown>> {
  header: MessageHeader;
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: C;
  buffers: Buffer[];
}

/** Protocol version we speak; ipykernel 6 and Enterprise Gateway both accept it. */
export const PROTOCOL_VERSION = "5.3";

/**
 * Builds a request with a fresh `msg_id`: the kernel drops a message whose signature it has seen
 * before, so ids must never repeat.
 */
export function createMessage<C extends object>(
  msgType: string,
  content: C,
  session: string,
  username = "pybox",
): JupyterMessage<C> {
  return {
    header: {
      msg_id: randomUUID(),
      msg_type: msgType,
      session,
      username,
      date: new Date().toISOString(),
      version: PROTOCOL_VERSION,
    },
    parent_header: {},
    metadata: {},
    content,
    buffers: [],
  };
}

/** Content of an `execute_request` as a non-interactive client sends it. */
export function executeContent(code: string) {
  return {
    code,
    silent: false,
    store_history: true,
    user_expressions: {},
    allow_stdin: false,
    stop_on_error: true,
  };
}
