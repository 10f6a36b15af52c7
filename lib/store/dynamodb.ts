import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import type { Config } from "../config.ts";

/** Key attribute names of the one table; the CDK table and the dev emulator use the same. */
export const TABLE_KEYS = { partition: "pk", sort: "sk", ttl: "expiresAt" } as const;

/**
 * How the one DynamoDB client retries and gives up. Throttling and 5xx are retried with the SDK's
 * standard backoff (jittered, 500 ms base for throttling); a connection that cannot be made or a
 * request that gets no answer is cut short and retried too, instead of waiting out the SDK's
 * default 5-minute socket timeout. Worst case for one call against a DynamoDB that never answers:
 * 5 × 3 s plus backoff, about 17 s, so a synchronous invocation (API Gateway allows 29 s) still
 * answers `503 STORE_UNAVAILABLE` itself rather than being cut off.
 */
export const DYNAMO_RETRY = {
  maxAttempts: 5,
  /** Loopback, VPC endpoint or regional endpoint: a TCP connection takes milliseconds. */
  connectionTimeoutMs: 1_000,
  /** A whole request (a single-item call takes milliseconds; a 1 MB scan page well under a second). */
  requestTimeoutMs: 3_000,
} as const;

/**
 * The DynamoDB client, built once per container. Standard retry mode with a few more attempts
 * than the default rides out throttling before the store reports itself unavailable, and bounded
 * connection and request times keep an unreachable DynamoDB from eating the invocation
 * (see {@link DYNAMO_RETRY}).
 */
export function createDynamoClient(options: Config["dynamodb"]): DynamoDBClient {
  return new DynamoDBClient({
    ...options,
    maxAttempts: DYNAMO_RETRY.maxAttempts,
    retryMode: "standard",
    requestHandler: {
      connectionTimeout: DYNAMO_RETRY.connectionTimeoutMs,
      requestTimeout: DYNAMO_RETRY.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
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
