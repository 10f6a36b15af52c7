import { DynamoDBPersistenceLayer } from "@aws-lambda-powertools/idempotency/dynamodb";
import { getConfig } from "../lib/config.ts";
import { queueConsumer } from "../lib/queue/consumer.ts";
import { getRuntime } from "../lib/runtime.ts";
import { TABLE_KEYS } from "../lib/store/dynamodb.ts";

const { sandbox, runs, queue, dynamo } = await getRuntime();

/**
 * The run queue's consumer (SQS event source, partial batch responses). Handled message ids live
 * in the one table under their own partition, expiring through the table's TTL attribute.
 */
export const handler = queueConsumer({
  sandbox,
  runs,
  queue,
  persistence: new DynamoDBPersistenceLayer({
    tableName: getConfig().table,
    keyAttr: TABLE_KEYS.partition,
    sortKeyAttr: TABLE_KEYS.sort,
    staticPkValue: "IDEMPOTENCY#run-queue",
    expiryAttr: TABLE_KEYS.ttl,
    awsSdkV3Client: dynamo,
  }),
});
