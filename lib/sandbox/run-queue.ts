import type { QueueMessage } from "../core/queue-message.ts";

/**
 * The port queued runs go out through, as the sandbox needs it: SQS on AWS, an in-process queue
 * under `npm start` (both in `lib/queue/` and `lib/dev/`). The sandbox declares it, so it knows no
 * queue's details.
 */
export interface RunQueue {
  /**
   * Queues a message in its kernel's group. `deduplicationId` (the run id) makes a resend within
   * the queue's window a no-op.
   */
  send(message: QueueMessage, deduplicationId: string): Promise<void>;
}
