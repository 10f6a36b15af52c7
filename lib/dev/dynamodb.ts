import { once } from "node:events";
import { Worker } from "node:worker_threads";
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceNotFoundException,
} from "@aws-sdk/client-dynamodb";
import { TABLE_KEYS } from "../store/dynamodb.ts";

/** Credentials and region for the emulator; it checks neither, but the SDK insists on both. */
export const LOCAL_AWS = {
  region: "local",
  credentials: { accessKeyId: "local", secretAccessKey: "local" },
} as const;

/** A running embedded DynamoDB. */
export interface EmbeddedDynamo {
  endpoint: string;
  close(): Promise<void>;
}

/**
 * Starts dynalite in this process, on a worker thread of its own, on a free loopback port,
 * persisted under `path` (in memory without one). It speaks the real DynamoDB HTTP API, so the
 * store runs unchanged against it.
 */
export async function startEmbeddedDynamo(path?: string): Promise<EmbeddedDynamo> {
  const worker = new Worker(new URL("./dynalite-worker.mjs", import.meta.url), {
    workerData: path ? { path } : {},
  });
  const [ready] = (await once(worker, "message")) as [{ port: number }];
  return {
    endpoint: `http://127.0.0.1:${ready.port}`,
    async close() {
      worker.postMessage("close");
      await once(worker, "message");
      await worker.terminate();
    },
  };
}

/**
 * Creates the table as the CDK stack defines it (pk/sk strings, on-demand) unless it exists.
 * dynalite has no TTL API, so expiry is not switched on here; records carry the attribute anyway.
 */
export async function ensureTable(endpoint: string, table: string): Promise<void> {
  const client = new DynamoDBClient({ ...LOCAL_AWS, endpoint });
  try {
    await client.send(new DescribeTableCommand({ TableName: table }));
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw error;
    await client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: "PAY_PER_REQUEST",
        AttributeDefinitions: [
          { AttributeName: TABLE_KEYS.partition, AttributeType: "S" },
          { AttributeName: TABLE_KEYS.sort, AttributeType: "S" },
        ],
        KeySchema: [
          { AttributeName: TABLE_KEYS.partition, KeyType: "HASH" },
          { AttributeName: TABLE_KEYS.sort, KeyType: "RANGE" },
        ],
      }),
    );
  } finally {
    client.destroy();
  }
}
