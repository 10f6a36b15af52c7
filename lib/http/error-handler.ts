import type { MiddlewareObj } from "@middy/core";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { type ErrorCode, MethodNotAllowedError, PyboxError, ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import { json } from "./responses.ts";

/** The one place an error becomes an HTTP status. */
export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  INVALID_REQUEST: 400,
  UNAUTHENTICATED: 401,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  KERNEL_BUSY: 409,
  KERNEL_DEAD: 409,
  KERNEL_STARTING: 409,
  KERNEL_STOPPED: 409,
  RUN_CONFLICT: 409,
  UPLOAD_CONFLICT: 409,
  FOLDER_NOT_EMPTY: 409,
  PAYLOAD_TOO_LARGE: 413,
  CAPACITY: 429,
  STORE_UNAVAILABLE: 503,
  BACKEND_UNAVAILABLE: 503,
  QUEUE_UNAVAILABLE: 503,
  KERNEL_LAUNCH_FAILED: 503,
  HOST_SHARED: 503,
  BACKEND_ERROR: 502,
  RUN_OUTCOME_UNKNOWN: 502,
  INTERNAL: 500,
};

/** What a 429 or 503 tells the caller to wait when the error names no delay of its own. */
const DEFAULT_RETRY_AFTER_SECONDS = 2;

/** Fixed, safe messages for errors whose own message must not be shown. */
const HIDDEN_MESSAGES: Partial<Record<ErrorCode, string>> = {
  BACKEND_UNAVAILABLE: "the kernel backend is unavailable; try again shortly",
  BACKEND_ERROR: "the kernel backend answered in an unexpected way",
  STORE_UNAVAILABLE: "the kernel store is unavailable; try again shortly",
  QUEUE_UNAVAILABLE: "the run queue is unavailable; nothing was queued; try again shortly",
  INTERNAL: "internal error",
};

/**
 * Turns any error into `{"error": {"code", "message"}}` with the fitting status. Only messages of
 * errors marked `expose` reach the caller; the rest are logged with their cause and replaced by a
 * fixed sentence, so no stack, address or secret leaves the function.
 */
export function errorResponse(error: unknown): APIGatewayProxyStructuredResultV2 {
  const known = error instanceof PyboxError ? error : undefined;
  const code: ErrorCode = known?.code ?? "INTERNAL";
  const status = STATUS_BY_CODE[code];
  if (status >= 500) logger.error("request failed", { error: error as Error });
  const message = known?.expose ? known.message : (HIDDEN_MESSAGES[code] ?? "internal error");
  const headers: Record<string, string> = {};
  const retryAfter =
    known?.retryAfterSeconds ?? (status === 429 || status === 503 ? DEFAULT_RETRY_AFTER_SECONDS : undefined);
  if (retryAfter !== undefined) headers["retry-after"] = String(retryAfter);
  if (error instanceof MethodNotAllowedError) headers.allow = error.allow.join(", ");
  const details =
    error instanceof ValidationError && error.issues.length > 0 ? { details: error.issues } : {};
  return json(status, { error: { code, message, ...details } }, headers);
}

/** middy middleware wrapping {@link errorResponse}; registered last so it sees every error. */
export function httpErrorHandler(): MiddlewareObj<unknown, APIGatewayProxyStructuredResultV2> {
  return {
    onError: async (request) => {
      request.response = errorResponse(request.error);
    },
  };
}
