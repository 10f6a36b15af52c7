import { createHash } from "node:crypto";
import type { QueueMessage } from "../core/queue-message.ts";

/**
 * The FIFO message group of a kernel: messages of one kernel are delivered one at a time and in
 * order (cells depend on the ones before), different kernels in parallel. Hashed, because group
 * ids allow 128 characters of a narrow alphabet and an owner may be a long ARN.
 */
export function messageGroupOf(owner: string, kernelId: string): string {
  return createHash("sha256")
    .update(JSON.stringify([owner, kernelId]))
    .digest("hex");
}

/** The FIFO group of any message: its kernel's, or the warm pool's own (refills run one at a time). */
export function groupOfMessage(message: QueueMessage): string {
  return message.action === "refill" ? "warm-pool" : messageGroupOf(message.owner, message.kernelId);
}
