import { ConditionFailedError, ItemTooLargeError, StoreUnavailableError } from "../errors.ts";

/**
 * Translates what the AWS SDK threw into the project's errors: a lost conditional write is an
 * expected outcome, anything else means DynamoDB is unreachable or refusing us (the SDK has
 * already retried with backoff by then).
 */
export function translateStoreError(error: unknown): Error {
  const name = error instanceof Error ? error.name : "";
  if (name === "ConditionalCheckFailedException" || name === "TransactionCanceledException") {
    return new ConditionFailedError("conditional write lost", { cause: error });
  }
  if (name === "ValidationException" && /size/i.test(error instanceof Error ? error.message : "")) {
    return new ItemTooLargeError("the item exceeds DynamoDB's size limit", { cause: error });
  }
  return new StoreUnavailableError("the kernel store is unavailable", { cause: error, retryAfterSeconds: 2 });
}

/** For writes whose lost condition means "someone else already did it": that is success. */
export function ignoreConditionFailed(error: unknown): void {
  if (!(error instanceof ConditionFailedError)) throw error;
}

/** Runs one DynamoDB call, translating what it throws (see {@link translateStoreError}). */
export async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateStoreError(error);
  }
}
