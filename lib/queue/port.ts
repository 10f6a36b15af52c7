import type { QueueMessage } from "./messages.ts";

/**
 * Where queued work goes and how the consumer hands a message back: SQS on AWS, an in-process
 * queue under `npm start`. Both deliver SQS-shaped events to the same consumer.
 */
export interface RunQueue {
  /**
   * Queues a message in its kernel's group. `deduplicationId` (the run id) makes a resend within
   * the queue's window a no-op.
   */
  send(message: QueueMessage, deduplicationId: string): Promise<void>;
  /** Makes a received message visible again after `delaySeconds` (0: at once). */
  retryLater(receiptHandle: string, delaySeconds: number): Promise<void>;
}
