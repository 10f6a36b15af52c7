import type { RunResult } from "../core/run-result.ts";

/** Room kept for the record's other attributes and DynamoDB's per-attribute overhead. */
const ENVELOPE_BYTES = 2_048;

/**
 * Cuts a RunResult until its stored size fits `maxBytes`, so a stored result never breaks DynamoDB's
 * 400 KB item limit. The collector already capped what the code displayed; what can still be too
 * big is the rest (a huge traceback, many small entries' overhead). Cuts from the end, keeps the
 * error's name and message, and says so with `truncated: true`; artifacts go (oldest first, said
 * by `artifactsTruncated`) before any output does.
 */
export function fitResult(result: RunResult, maxBytes: number): RunResult {
  const limit = Math.max(0, maxBytes - ENVELOPE_BYTES);
  if (sizeOf(result) <= limit) return result;
  const fitted: RunResult = {
    ...result,
    data: [...result.data],
    artifacts: [...result.artifacts],
    truncated: true,
  };
  const error = fitted.error;
  if (error && error.traceback.length > 0) {
    fitted.error = { ...error, traceback: [] };
    if (sizeOf(fitted) <= limit) {
      // Put back as much of the traceback's end (where the error is) as fits.
      for (let keep = 1; keep <= error.traceback.length; keep++) {
        const traceback = error.traceback.slice(-keep);
        if (sizeOf({ ...fitted, error: { ...error, traceback } }) > limit) break;
        fitted.error = { ...error, traceback };
      }
      return fitted;
    }
  }
  while (fitted.artifacts.length > 0 && sizeOf(fitted) > limit) {
    fitted.artifacts.pop();
    fitted.artifactsTruncated = true;
  }
  while (fitted.data.length > 0 && sizeOf(fitted) > limit) fitted.data.pop();
  if (fitted.error && sizeOf(fitted) > limit) {
    fitted.error = {
      ename: fitted.error.ename.slice(0, 256),
      evalue: fitted.error.evalue.slice(0, 4_096),
      traceback: [],
    };
  }
  return fitted;
}

/** The size DynamoDB counts for a result stored as a map attribute. */
function sizeOf(result: RunResult): number {
  return dynamoSize(result);
}

/**
 * An upper estimate of a value's size as a DynamoDB attribute: strings by their UTF-8 bytes,
 * numbers by their digits (up to 21 bytes), and 3 bytes of overhead per list or map plus 1 per
 * element. JSON length is not enough: a list of small numbers costs DynamoDB more than its JSON.
 */
export function dynamoSize(value: unknown): number {
  if (typeof value === "string") return Buffer.byteLength(value, "utf8");
  if (typeof value === "number")
    return Math.min(21, 2 + Math.ceil(String(value).replace(/[-.+e]/g, "").length / 2));
  if (value === null || value === undefined || typeof value === "boolean") return 1;
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + 1 + dynamoSize(item), 3);
  if (typeof value === "object") {
    let size = 3;
    for (const [key, item] of Object.entries(value))
      size += Buffer.byteLength(key, "utf8") + 1 + dynamoSize(item);
    return size;
  }
  return Buffer.byteLength(String(value), "utf8");
}
