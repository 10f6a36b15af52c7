import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";
import { type ElasticMq, type LocalQueue, startElasticMq } from "../support/elasticmq.ts";

// Proves the local SQS the other tests build on: FIFO order and deduplication, redrive to a
// dead-letter queue, and SQS's 1 MiB message limit, through the same SDK the product uses.
describe("ElasticMQ, the tests' local SQS", () => {
  let mq: ElasticMq;

  before(async () => {
    mq = await startElasticMq();
  });

  after(async () => {
    await mq?.close();
  });

  /** A FIFO queue whose messages go to a FIFO dead-letter queue after two receives. */
  async function fifoWithDeadLetter(name: string): Promise<{ queue: LocalQueue; dlq: LocalQueue }> {
    const dlq = await mq.createQueue(`${name}-dlq.fifo`, { fifo: true });
    const queue = await mq.createQueue(`${name}.fifo`, {
      fifo: true,
      visibilityTimeoutSeconds: 30,
      deadLetter: { arn: dlq.arn, maxReceiveCount: 2 },
    });
    return { queue, dlq };
  }

  async function receive(queueUrl: string): Promise<Message[]> {
    const { Messages } = await mq.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        MessageSystemAttributeNames: ["All"],
      }),
    );
    return Messages ?? [];
  }

  test("queues get loopback URLs and us-east-1 ARNs", async () => {
    const { queue, dlq } = await fifoWithDeadLetter("urls");
    assert.equal(queue.url, `${mq.endpoint}/000000000000/urls.fifo`);
    assert.equal(queue.arn, "arn:aws:sqs:us-east-1:000000000000:urls.fifo");
    assert.equal(dlq.arn, "arn:aws:sqs:us-east-1:000000000000:urls-dlq.fifo");
  });

  test("a FIFO queue delivers a message once and drops a resend with the same deduplication ID", async () => {
    const { queue } = await fifoWithDeadLetter("dedup");
    const send = (body: string) =>
      mq.sqs.send(
        new SendMessageCommand({
          QueueUrl: queue.url,
          MessageBody: body,
          MessageGroupId: "kernel-1",
          MessageDeduplicationId: "request-1",
        }),
      );
    const first = await send("run 1+1");
    const resent = await send("run 1+1 (retried)");
    assert.equal(resent.MessageId, first.MessageId, "SQS answers a deduplicated send with the first message");

    const received = await receive(queue.url);
    assert.deepEqual(
      received.map((message) => message.Body),
      ["run 1+1"],
    );
    assert.equal(received[0]?.Attributes?.MessageGroupId, "kernel-1");
    assert.equal(received[0]?.Attributes?.MessageDeduplicationId, "request-1");

    await mq.sqs.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: received[0]?.ReceiptHandle }),
    );
    assert.deepEqual(await receive(queue.url), [], "a deleted message is gone");
  });

  test("a message received twice without a delete moves to the dead-letter queue", async () => {
    const { queue, dlq } = await fifoWithDeadLetter("redrive");
    await mq.sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.url,
        MessageBody: "crashes the worker",
        MessageGroupId: "kernel-2",
        MessageDeduplicationId: "request-2",
      }),
    );
    for (const attempt of ["1", "2"]) {
      const [message, ...more] = await receive(queue.url);
      assert.equal(more.length, 0);
      assert.equal(message?.Body, "crashes the worker");
      assert.equal(message?.Attributes?.ApproximateReceiveCount, attempt);
      // As a worker that gives up would: make it visible again now rather than after 30 s.
      await mq.sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: queue.url,
          ReceiptHandle: message?.ReceiptHandle,
          VisibilityTimeout: 0,
        }),
      );
    }

    assert.deepEqual(await receive(queue.url), [], "the third receive finds the message moved away");
    const [dead, ...more] = await receive(dlq.url);
    assert.equal(more.length, 0);
    assert.equal(dead?.Body, "crashes the worker");
    assert.equal(dead?.Attributes?.MessageGroupId, "kernel-2");
    assert.equal(dead?.Attributes?.DeadLetterQueueSourceArn, queue.arn);
  });

  test("messages up to SQS's 1 MiB limit go through and larger ones are refused", async () => {
    const queue = await mq.createQueue("large-payloads");
    const body = "x".repeat(1024 * 1024);
    await mq.sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body }));
    const [message] = await receive(queue.url);
    assert.equal(message?.Body?.length, body.length);
    assert.equal(message?.Body, body);

    await assert.rejects(
      mq.sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: `${body}x` })),
      (error: Error) => /MessageTooLong/.test(`${error.name} ${error.message}`),
    );
  });
});
