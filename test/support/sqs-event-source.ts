import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import type { SQSEvent, SQSRecord } from "aws-lambda";
import { lambdaContext } from "../../lib/dev/lambda-context.ts";
import type { QueueLambda } from "../../lib/queue/consumer.ts";

/**
 * A double of Lambda's SQS event source mapping with `ReportBatchItemFailures`, driven by the test
 * instead of Lambda's pollers: receive a batch, hand it to the function as an SQS event, delete the
 * messages the function did not report as failed (all of them stay if it threw). The queue itself
 * is real (ElasticMQ), so visibility, receive counts, FIFO groups and redrive are SQS's own.
 */
export class SqsEventSource {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly queueArn: string,
    private readonly handler: QueueLambda,
    private readonly options: { batchSize?: number; timeoutMs?: number } = {},
  ) {}

  /** One poll: returns how many messages were delivered and which of them failed. */
  async pollOnce(): Promise<{ delivered: number; failed: string[] }> {
    const out = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: this.options.batchSize ?? 10,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ["All"],
        MessageAttributeNames: ["All"],
      }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) return { delivered: 0, failed: [] };
    const event: SQSEvent = { Records: messages.map((m) => this.toRecord(m)) };
    let failed: string[];
    try {
      const response = await this.handler(event, lambdaContext("queue", this.options.timeoutMs ?? 60_000));
      failed = response.batchItemFailures.map((f) => f.itemIdentifier);
    } catch {
      failed = messages.map((m) => m.MessageId ?? "");
    }
    const done = messages.filter((m) => !failed.includes(m.MessageId ?? ""));
    if (done.length > 0) {
      await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? "" })),
        }),
      );
    }
    return { delivered: messages.length, failed };
  }

  /** Polls until `done()` holds, or fails after `timeoutMs`. */
  async pollUntil(done: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error("the queue did not reach the expected state in time");
      await this.pollOnce();
    }
  }

  private toRecord(message: Message): SQSRecord {
    const attributes = message.Attributes ?? {};
    return {
      messageId: message.MessageId ?? "",
      receiptHandle: message.ReceiptHandle ?? "",
      body: message.Body ?? "",
      attributes: {
        ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? "1",
        SentTimestamp: attributes.SentTimestamp ?? "0",
        SenderId: attributes.SenderId ?? "",
        ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? "0",
        ...(attributes.MessageGroupId ? { MessageGroupId: attributes.MessageGroupId } : {}),
        ...(attributes.MessageDeduplicationId
          ? { MessageDeduplicationId: attributes.MessageDeduplicationId }
          : {}),
        ...(attributes.SequenceNumber ? { SequenceNumber: attributes.SequenceNumber } : {}),
      },
      messageAttributes: {},
      md5OfBody: message.MD5OfBody ?? "",
      eventSource: "aws:sqs",
      eventSourceARN: this.queueArn,
      awsRegion: "us-east-1",
    };
  }
}
