import { createHash, randomUUID } from "node:crypto";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import type { QueueMessage } from "../core/queue-message.ts";
import { logger } from "../logger.ts";
import type { QueueLambda } from "../queue/consumer.ts";
import { groupOfMessage } from "../queue/messages.ts";
import type { QueueClient } from "../queue/port.ts";
import { lambdaContext } from "./lambda-context.ts";

/**
 * How an in-process queue behaves. The receive limit is the deployed queue's; the visibility timeout
 * is shorter than its 90 minutes, since the consumer hands failed messages back itself anyway.
 */
export interface InProcessQueueOptions {
  /** Receives before a failing message moves to the dead-letter list. */
  maxReceiveCount?: number;
  /** When a failed message comes back if the consumer does not say. */
  visibilityTimeoutMs?: number;
  /** Time each consumer invocation gets. */
  consumerTimeoutMs?: number;
}

interface Queued {
  messageId: string;
  body: string;
  groupId: string;
  deduplicationId: string;
  sentAt: number;
  receives: number;
  visibleAt: number;
  receiptHandle?: string;
}

/** SQS FIFO's deduplication window. */
const DEDUPLICATION_WINDOW_MS = 5 * 60_000;

/**
 * The run queue of `npm start`: a FIFO queue in this process that invokes the same consumer
 * handler Lambda runs, with SQS-shaped events, one message group (kernel) at a time and groups in
 * parallel. It keeps SQS's contract where the consumer relies on it: deduplication ids, receive
 * counts, partial batch failures, visibility changes, and a dead-letter list after
 * `maxReceiveCount` receives. Messages live in memory: a restart of the dev server drops them.
 */
export class InProcessQueue implements QueueClient {
  private readonly groups = new Map<string, Queued[]>();
  private readonly busy = new Set<string>();
  private readonly seen = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly byReceipt = new Map<string, Queued>();
  private consumer: QueueLambda | undefined;
  private closed = false;
  /** Bodies of messages that failed `maxReceiveCount` times, as a dead-letter queue would hold them. */
  readonly deadLetters: string[] = [];

  constructor(private readonly options: InProcessQueueOptions = {}) {}

  /** Starts delivering to the consumer (the queue function's handler). */
  attach(consumer: QueueLambda): void {
    this.consumer = consumer;
    for (const group of this.groups.keys()) this.drain(group);
  }

  async send(message: QueueMessage, deduplicationId: string): Promise<void> {
    const now = Date.now();
    for (const [id, at] of this.seen) if (at < now - DEDUPLICATION_WINDOW_MS) this.seen.delete(id);
    const groupId = groupOfMessage(message);
    const dedupKey = `${groupId}/${deduplicationId}`;
    if (this.seen.has(dedupKey)) return;
    this.seen.set(dedupKey, now);
    const queued: Queued = {
      messageId: randomUUID(),
      body: JSON.stringify(message),
      groupId,
      deduplicationId,
      sentAt: now,
      receives: 0,
      visibleAt: now,
    };
    const group = this.groups.get(groupId) ?? [];
    group.push(queued);
    this.groups.set(groupId, group);
    this.drain(groupId);
  }

  async retryLater(receiptHandle: string, delaySeconds: number): Promise<void> {
    const queued = this.byReceipt.get(receiptHandle);
    if (queued) queued.visibleAt = Date.now() + delaySeconds * 1_000;
  }

  /** Stops delivering and waits for the invocations under way. Undelivered messages are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Delivers the head of a group when it is visible and no invocation holds the group. */
  private drain(groupId: string): void {
    if (this.closed || !this.consumer || this.busy.has(groupId)) return;
    const head = this.groups.get(groupId)?.[0];
    if (!head) {
      this.groups.delete(groupId);
      return;
    }
    const wait = head.visibleAt - Date.now();
    if (wait > 0) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.drain(groupId);
      }, wait);
      this.timers.add(timer);
      return;
    }
    this.busy.add(groupId);
    const delivery = this.deliver(this.consumer, head).finally(() => {
      this.inFlight.delete(delivery);
      this.busy.delete(groupId);
      this.drain(groupId);
    });
    this.inFlight.add(delivery);
  }

  private async deliver(consumer: QueueLambda, queued: Queued): Promise<void> {
    queued.receives += 1;
    queued.receiptHandle = randomUUID();
    queued.visibleAt = Date.now() + (this.options.visibilityTimeoutMs ?? 30_000);
    this.byReceipt.set(queued.receiptHandle, queued);
    const event: SQSEvent = { Records: [toRecord(queued)] };
    let failed: boolean;
    try {
      const context = lambdaContext("queue", this.options.consumerTimeoutMs ?? 15 * 60_000);
      const response = await consumer(event, context);
      failed = response.batchItemFailures.some((f) => f.itemIdentifier === queued.messageId);
    } catch (error) {
      logger.error("queue consumer invocation failed", { error: error as Error });
      failed = true;
    }
    this.byReceipt.delete(queued.receiptHandle);
    const group = this.groups.get(queued.groupId) ?? [];
    if (!failed) {
      group.shift();
    } else if (queued.receives >= (this.options.maxReceiveCount ?? 5)) {
      group.shift();
      this.deadLetters.push(queued.body);
      logger.error("queue message moved to the dead-letter list", { messageId: queued.messageId });
    }
  }
}

function toRecord(queued: Queued): SQSRecord {
  return {
    messageId: queued.messageId,
    receiptHandle: queued.receiptHandle ?? "",
    body: queued.body,
    attributes: {
      ApproximateReceiveCount: String(queued.receives),
      SentTimestamp: String(queued.sentAt),
      SenderId: "local",
      ApproximateFirstReceiveTimestamp: String(queued.sentAt),
      MessageGroupId: queued.groupId,
      MessageDeduplicationId: queued.deduplicationId,
      SequenceNumber: String(queued.sentAt),
    },
    messageAttributes: {},
    md5OfBody: createHash("md5").update(queued.body).digest("hex"),
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:local:000000000000:pybox-runs.fifo",
    awsRegion: "local",
  };
}
