import { ChangeMessageVisibilityCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { Config } from "../config.ts";
import type { QueueMessage } from "../core/queue-message.ts";
import { ConfigError, QueueUnavailableError } from "../errors.ts";
import { groupOfMessage } from "./messages.ts";
import type { QueueClient } from "./port.ts";

/** The run queue on Amazon SQS (a FIFO queue: one message group per kernel). */
export class SqsRunQueue implements QueueClient {
  private readonly client: SQSClient;
  private readonly url: string;

  constructor(options: Config["queue"]) {
    if (!options.url) throw new ConfigError("PYBOX_QUEUE_URL is required for queued runs");
    this.url = options.url;
    // Only the client settings; absent ones stay absent so the SDK resolves its own defaults.
    const { url: _url, maxReceives: _maxReceives, ...client } = options;
    this.client = new SQSClient({ ...client, maxAttempts: 4, retryMode: "standard" });
  }

  async send(message: QueueMessage, deduplicationId: string): Promise<void> {
    const command = new SendMessageCommand({
      QueueUrl: this.url,
      MessageBody: JSON.stringify(message),
      MessageGroupId: groupOfMessage(message),
      MessageDeduplicationId: deduplicationId,
    });
    await this.call(() => this.client.send(command));
  }

  async retryLater(receiptHandle: string, delaySeconds: number): Promise<void> {
    const command = new ChangeMessageVisibilityCommand({
      QueueUrl: this.url,
      ReceiptHandle: receiptHandle,
      VisibilityTimeout: Math.max(0, Math.min(43_200, Math.round(delaySeconds))),
    });
    await this.call(() => this.client.send(command));
  }

  /** SQS errors become {@link QueueUnavailableError} here; the SDK has retried by then. */
  private async call(send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (cause) {
      throw new QueueUnavailableError("the run queue refused the message", { cause, retryAfterSeconds: 2 });
    }
  }
}
