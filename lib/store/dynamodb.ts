import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Config } from "../config.ts";

/** Key attribute names of the one table; the CDK table and the dev emulator use the same. */
export const TABLE_KEYS = { partition: "pk", sort: "sk", ttl: "expiresAt" } as const;

/**
 * The document client, built once per container. Standard retry mode with a few more attempts
 * than the default rides out throttling before the store reports itself unavailable.
 */
export function createDocumentClient(options: Config["dynamodb"]): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    ...options,
    maxAttempts: 5,
    retryMode: "standard",
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}
