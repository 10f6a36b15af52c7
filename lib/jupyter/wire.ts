import { createHmac, timingSafeEqual } from "node:crypto";
import { InvalidMessageError } from "../errors.ts";
import type { JupyterMessage, MessageHeader } from "./messages.ts";

/** Separates routing identities from the signed message parts. */
export const DELIMITER = Buffer.from("<IDS|MSG>");

/** HMAC-SHA256 over the four JSON frames, hex encoded, as the wire protocol defines it. */
export function sign(key: string, parts: readonly Buffer[]): string {
  const hmac = createHmac("sha256", key);
  for (const part of parts) hmac.update(part);
  return hmac.digest("hex");
}

/** Frames to send on a DEALER socket: delimiter, signature, header, parent, metadata, content, buffers. */
export function serialize(message: JupyterMessage<object>, key: string): Buffer[] {
  const parts = [
    Buffer.from(JSON.stringify(message.header)),
    Buffer.from(JSON.stringify(message.parent_header)),
    Buffer.from(JSON.stringify(message.metadata)),
    Buffer.from(JSON.stringify(message.content)),
  ];
  return [DELIMITER, Buffer.from(sign(key, parts)), ...parts, ...message.buffers];
}

/**
 * Decodes frames received from a kernel, after checking their signature. Unsigned or wrongly
 * signed messages are rejected: with a shared key, anything else could be forged by a neighbour.
 */
export function deserialize(frames: readonly Buffer[], key: string): JupyterMessage {
  const at = frames.findIndex((frame) => frame.equals(DELIMITER));
  if (at < 0 || frames.length < at + 6) {
    throw new InvalidMessageError("kernel message is missing its delimiter or parts");
  }
  const signature = frames[at + 1] as Buffer;
  const parts = frames.slice(at + 2, at + 6);
  const expected = Buffer.from(sign(key, parts));
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
    throw new InvalidMessageError("kernel message signature is invalid");
  }
  const [header, parent, metadata, content] = parts.map((part) => parseObject(part));
  const typed = header as Partial<MessageHeader>;
  if (typeof typed.msg_id !== "string" || typeof typed.msg_type !== "string") {
    throw new InvalidMessageError("kernel message header lacks msg_id or msg_type");
  }
  return {
    header: typed as MessageHeader,
    parent_header: parent as Partial<MessageHeader>,
    metadata: metadata as Record<string, unknown>,
    content: content as Record<string, unknown>,
    buffers: frames.slice(at + 6),
  };
}

function parseObject(frame: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(frame.toString("utf8"));
  } catch (cause) {
    throw new InvalidMessageError("kernel message part is not JSON", { cause });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new InvalidMessageError("kernel message part is not a JSON object");
  }
  return value as Record<string, unknown>;
}
