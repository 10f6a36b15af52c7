import { Duration, Stack } from "aws-cdk-lib";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import { DeduplicationScope, FifoThroughputLimit, Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { PyboxFunction } from "./functions.ts";

/**
 * SQS allows messages of up to 1 MiB; a queued run carries its code (at most 256 KiB by default,
 * up to twice that once JSON-escaped) and the caller's identity.
 */
export const MAX_MESSAGE_BYTES = 1_048_576;

/** Messages that failed this many receives move to the dead-letter queue. */
export const MAX_RECEIVE_COUNT = 5;

/**
 * Lambda's guidance for SQS event sources: the visibility timeout is at least six times the
 * function's timeout, so a message is not redelivered while a retry of its batch still runs.
 */
export const VISIBILITY_FACTOR = 6;

/** Props of {@link RunQueue}. */
export interface RunQueueProps {
  /** The consumer function's timeout; the visibility timeout is derived from it. */
  consumerTimeout: Duration;
}

/**
 * The queue of async runs: FIFO with the kernel as message group, so one kernel's runs execute in
 * the order they were submitted while different kernels' runs proceed in parallel (high-throughput
 * FIFO: deduplication and throughput per message group). Content-based deduplication lets trusted
 * producers omit a deduplication id. SQS-managed encryption, TLS only, and a FIFO dead-letter
 * queue that keeps what could not be run for 14 days.
 */
export class RunQueue extends Construct {
  readonly queue: Queue;
  readonly deadLetters: Queue;

  constructor(scope: Construct, id: string, props: RunQueueProps) {
    super(scope, id);
    const base = queueBaseName(Stack.of(this).stackName);
    this.deadLetters = new Queue(this, "DeadLetters", {
      queueName: `${base}-runs-dlq.fifo`,
      fifo: true,
      contentBasedDeduplication: true,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      maxMessageSizeBytes: MAX_MESSAGE_BYTES,
      retentionPeriod: Duration.days(14),
    });
    this.queue = new Queue(this, "Runs", {
      queueName: `${base}-runs.fifo`,
      fifo: true,
      contentBasedDeduplication: true,
      deduplicationScope: DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      maxMessageSizeBytes: MAX_MESSAGE_BYTES,
      retentionPeriod: Duration.days(4),
      visibilityTimeout: Duration.seconds(props.consumerTimeout.toSeconds() * VISIBILITY_FACTOR),
      deadLetterQueue: { queue: this.deadLetters, maxReceiveCount: MAX_RECEIVE_COUNT },
    });
  }

  /** Sets `PYBOX_QUEUE_URL` and lets the function send messages, and nothing else. */
  bindProducer(fn: PyboxFunction): void {
    fn.setEnvironment("PYBOX_QUEUE_URL", this.queue.queueUrl);
    this.queue.grant(fn.function, "sqs:SendMessage");
  }

  /**
   * Makes the function the queue's consumer: an event source mapping with partial batch responses
   * (its grant includes `sqs:ChangeMessageVisibility`, which the consumer uses to retry a message
   * whose kernel is busy soon rather than after the full visibility timeout), `PYBOX_QUEUE_URL`,
   * and the redrive limit, so the consumer closes a run on its last delivery instead of leaving it
   * `queued` behind a dead-lettered message.
   */
  bindConsumer(fn: PyboxFunction, batchSize: number): void {
    fn.setEnvironment("PYBOX_QUEUE_URL", this.queue.queueUrl);
    fn.setEnvironment("PYBOX_QUEUE_MAX_RECEIVES", String(MAX_RECEIVE_COUNT));
    fn.function.addEventSource(new SqsEventSource(this.queue, { batchSize, reportBatchItemFailures: true }));
  }
}

/** SQS names are at most 80 characters; `-runs-dlq.fifo` takes 14 of them. */
function queueBaseName(stackName: string): string {
  return stackName.slice(0, 80 - "-runs-dlq.fifo".length);
}
