import type { RunQueue } from "../sandbox/run-queue.ts";

/**
 * A run queue as its consumer also needs it: the sandbox's {@link RunQueue}, and a way to hand a
 * received message back. SQS on AWS and the in-process queue of `npm start` are both; each delivers
 * SQS-shaped events to the same consumer.
 */
export interface QueueClient extends RunQueue {
  /** Makes a received message visible again after `delaySeconds` (0: at once). */
  retryLater(receiptHandle: string, delaySeconds: number): Promise<void>;
}
