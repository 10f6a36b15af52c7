import type { SQSEvent } from "aws-lambda";
import type { QueueMessage } from "../../lib/core/queue-message.ts";
import { groupOfMessage } from "../../lib/queue/messages.ts";

/**
 * One delivery of `message` as Lambda's SQS event source mapping hands it to the consumer, built by
 * hand: for tests that deliver a message at a moment of their choosing (twice at once, during a
 * fault) rather than through a queue. The receipt handle is `receipt-<messageId>-<receives>`.
 */
export function sqsDelivery(message: QueueMessage, messageId: string, receives = 1): SQSEvent {
  const now = String(Date.now());
  return {
    Records: [
      {
        messageId,
        receiptHandle: `receipt-${messageId}-${receives}`,
        body: JSON.stringify(message),
        attributes: {
          ApproximateReceiveCount: String(receives),
          SentTimestamp: now,
          SenderId: "test",
          ApproximateFirstReceiveTimestamp: now,
          MessageGroupId: groupOfMessage(message),
        },
        messageAttributes: {},
        md5OfBody: "",
        eventSource: "aws:sqs",
        eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:runs.fifo",
        awsRegion: "us-east-1",
      },
    ],
  };
}
