import assert from "node:assert/strict";
import { PyboxError } from "../../clients/typescript/src/index.ts";

/** The error `promise` rejects with, asserted to be the TypeScript client's {@link PyboxError}. */
export async function rejection(promise: Promise<unknown>): Promise<PyboxError> {
  const error = await promise.then(
    () => assert.fail("expected a PyboxError"),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof PyboxError, `expected a PyboxError, got ${String(error)}`);
  return error;
}
