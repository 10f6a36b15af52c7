import { processPartialResponse, SqsFifoPartialProcessorAsync } from "@aws-lambda-powertools/batch";
import {
  IdempotencyAlreadyInProgressError,
  IdempotencyConfig,
  makeIdempotent,
} from "@aws-lambda-powertools/idempotency";
import { DynamoDBPersistenceLayer } from "@aws-lambda-powertools/idempotency/dynamodb";
import type { BasePersistenceLayer } from "@aws-lambda-powertools/idempotency/persistence";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { type KernelMessage, type QueueMessage, QueueMessageSchema } from "../core/queue-message.ts";
import { PoisonMessageError, PyboxError, RetryLaterError, ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import { duration, METRIC, publishMetrics } from "../metrics.ts";
import type { Runtime } from "../runtime.ts";
import type { RunExecutor } from "../sandbox/run-executor.ts";
import type { SandboxService } from "../sandbox/service.ts";
import { TABLE_KEYS } from "../store/dynamodb.ts";
import type { QueueClient } from "./port.ts";

/** What the consumer drives: the same services as the HTTP functions, and the queue to hand back to. */
export interface ConsumerDependencies {
  sandbox: SandboxService;
  executor: RunExecutor;
  queue: QueueClient;
  /** Where handled message ids are remembered (the one table, under their own partition). */
  persistence: BasePersistenceLayer;
  /** How long a handled message id is remembered: no longer than its run record is kept. */
  rememberSeconds: number;
  /** Receives after which the queue moves a message to its dead-letter queue. */
  maxReceives: number;
}

/** The Lambda signature of an SQS consumer with partial batch responses. */
export type QueueLambda = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

/** Kept back from the invocation's deadline for the batch response and the visibility changes. */
const DEADLINE_RESERVE_MS = 2_000;

/** What a message id is remembered by, and the outcome stored for a duplicate to find. */
interface Delivery {
  key: string;
  message: KernelMessage;
  id: string;
  deadline: number;
  finalDelivery: boolean;
}

/**
 * The run queue's consumer. Each message is validated, then handled at most once per id (the
 * message's `runId`, else its SQS message id) through Powertools idempotency, and a `run` also
 * moves its run record `queued → running` by a conditional write. One message failing never fails
 * its neighbours: the batch answers with partial failures, and on a FIFO queue the messages behind
 * a failed one in its kernel's group fail with it so the kernel's runs keep their order. Failed
 * messages are made visible again soon (a busy kernel in seconds, a poison message at once so it
 * reaches the dead-letter queue), not after the queue's long visibility timeout.
 */
export function queueConsumer(deps: ConsumerDependencies): QueueLambda {
  const config = new IdempotencyConfig({
    eventKeyJmesPath: "key",
    expiresAfterSeconds: deps.rememberSeconds,
  });
  const handleOnce = makeIdempotent((delivery: Delivery) => dispatch(deps, delivery), {
    persistenceStore: deps.persistence,
    config,
    keyPrefix: "run-queue",
  });

  return async (event, context) => {
    config.registerLambdaContext(context);
    const deadline = Date.now() + context.getRemainingTimeInMillis() - DEADLINE_RESERVE_MS;
    const delays = new Map<string, number>();
    const handle = async (record: SQSRecord) => {
      try {
        const message = parse(record);
        // A refill fills the pool up to its size: a second delivery finds it full, nothing to dedupe.
        if (message.action === "refill") return { filled: await deps.sandbox.refillPool() };
        if (message.action === "run")
          duration(METRIC.queuedRunAge, Date.now() - Number(record.attributes.SentTimestamp));
        const id = message.action === "run" ? (message.runId ?? record.messageId) : record.messageId;
        const key = JSON.stringify([message.owner, message.kernelId, message.action, id]);
        const receives = Number(record.attributes.ApproximateReceiveCount) || 1;
        return await handleOnce({ key, message, id, deadline, finalDelivery: receives >= deps.maxReceives });
      } catch (error) {
        delays.set(record.messageId, retryDelaySeconds(error, record));
        logFailure(error, record);
        throw error;
      }
    };
    const response = await processPartialResponse(event, handle, new SqsFifoPartialProcessorAsync(), {
      context,
      skipGroupOnError: true,
      throwOnFullBatchFailure: false,
    });
    await handBack(deps.queue, event, response, delays);
    return response;
  };
}

/**
 * The consumer of a container's runtime. Handled message ids live in the one table under their
 * own partition, expiring through the table's TTL attribute. Every log line of an invocation carries
 * its request id.
 */
export function runtimeConsumer(runtime: Runtime): QueueLambda {
  const { config } = runtime;
  const consume = queueConsumer({
    ...runtime,
    rememberSeconds: Math.min(24 * 3600, config.asyncRun.resultTtlSeconds),
    maxReceives: config.queue.maxReceives,
    persistence: new DynamoDBPersistenceLayer({
      tableName: config.table,
      keyAttr: TABLE_KEYS.partition,
      sortKeyAttr: TABLE_KEYS.sort,
      staticPkValue: "IDEMPOTENCY#run-queue",
      expiryAttr: TABLE_KEYS.ttl,
      awsSdkV3Client: runtime.dynamo,
    }),
  });
  const fn = middy<SQSEvent, SQSBatchResponse>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(publishMetrics(config.metrics))
    .handler(consume);
  return (event, context) => fn(event, context);
}

async function dispatch(deps: ConsumerDependencies, delivery: Delivery): Promise<Record<string, unknown>> {
  const { message } = delivery;
  switch (message.action) {
    case "start": {
      const { created, kernel } = await deps.sandbox.start(message.owner, {
        kernelId: message.kernelId,
        ...(message.cwd === undefined ? {} : { cwd: message.cwd }),
        ...(message.env === undefined ? {} : { env: message.env }),
      });
      return { created, state: kernel.state };
    }
    case "run":
      return {
        status: await deps.executor.execute(message, {
          runId: delivery.id,
          deadline: delivery.deadline,
          finalDelivery: delivery.finalDelivery,
        }),
      };
    case "stop":
      await deps.sandbox.stop(message.owner, message.kernelId);
      return { stopped: true };
  }
}

function parse(record: SQSRecord): QueueMessage {
  let body: unknown;
  try {
    body = JSON.parse(record.body);
  } catch {
    throw new PoisonMessageError("the message body is not JSON");
  }
  const parsed = QueueMessageSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PoisonMessageError(
      `not a queue message: ${issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "invalid"}`,
    );
  }
  return parsed.data;
}

/**
 * When a failed message should be seen again. A message that can never succeed comes back at once,
 * to reach the dead-letter queue in a few quick receives; a peer's or the kernel's `Retry-After` is
 * honoured; anything else backs off with the number of receives.
 */
function retryDelaySeconds(error: unknown, record: SQSRecord): number {
  if (error instanceof PoisonMessageError || error instanceof ValidationError) return 0;
  if (error instanceof IdempotencyAlreadyInProgressError) return 5;
  if (error instanceof PyboxError && error.retryAfterSeconds !== undefined) return error.retryAfterSeconds;
  const receives = Number(record.attributes.ApproximateReceiveCount) || 1;
  return Math.min(300, 5 * 2 ** (receives - 1));
}

function logFailure(error: unknown, record: SQSRecord): void {
  const context = { messageId: record.messageId, receives: record.attributes.ApproximateReceiveCount };
  if (error instanceof RetryLaterError) logger.info(`queue message deferred: ${error.message}`, context);
  else if (error instanceof PoisonMessageError)
    logger.error(`poison queue message: ${error.message}`, context);
  else logger.warn("queue message failed", { ...context, error: error as Error });
}

/**
 * Makes every failed message visible again after its delay. Messages skipped behind a failed one
 * in the same group take that one's delay, so the group resumes in order.
 */
async function handBack(
  queue: QueueClient,
  event: SQSEvent,
  response: SQSBatchResponse,
  delays: Map<string, number>,
): Promise<void> {
  const byId = new Map(event.Records.map((record) => [record.messageId, record]));
  const groupDelay = new Map<string, number>();
  for (const record of event.Records) {
    const delay = delays.get(record.messageId);
    const group = record.attributes.MessageGroupId ?? record.messageId;
    if (delay !== undefined && !groupDelay.has(group)) groupDelay.set(group, delay);
  }
  await Promise.all(
    response.batchItemFailures.map(async ({ itemIdentifier }) => {
      const record = byId.get(itemIdentifier);
      if (!record) return;
      const group = record.attributes.MessageGroupId ?? record.messageId;
      const delay = delays.get(record.messageId) ?? groupDelay.get(group) ?? 0;
      await queue
        .retryLater(record.receiptHandle, delay)
        .catch((error) => logger.warn("visibility not changed; the queue's timeout applies", { error }));
    }),
  );
}
