import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Config } from "../config.ts";

/** Key attribute names of the one table; the CDK table and the dev emulator use the same. */
export const TABLE_KEYS = { partition: "pk", sort: "sk", ttl: "expiresAt" } as const;

/**
 * The DynamoDB client, built once per container. Standard retry mode with a few more attempts
 * than the default rides out throttling before the store reports itself unavailable.
 */
export function createDynamoClient(options: Config["dynamodb"]): DynamoDBClient {
  return new DynamoDBClient({ ...options, maxAttempts: 5, retryMode: "standard" });
}

/** Plain JavaScript values in and out, over the one client (undefined attributes are dropped). */
export function createDocumentClient(client: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}

/** The TTL attribute's value for an item kept `ttlSeconds` from now (epoch seconds, as DynamoDB TTL wants). */
export function expiresIn(ttlSeconds: number): number {
  return Math.floor(Date.now() / 1000) + ttlSeconds;
}
