import type { ErrorBody, ServiceErrorCode } from "./types.ts";

/**
 * Codes the client itself uses when there is no service error to carry: the service could not be
 * reached or answered outside its API, a queued run ended without a result, a file changed while
 * it was read.
 */
export type ClientErrorCode =
  /** An error status whose body was not the service's `{"error": …}` (a proxy's or load balancer's page). */
  | "HTTP_ERROR"
  /** No HTTP answer at all: refused, reset, DNS, TLS (`status` 0). */
  | "UNREACHABLE"
  /** No answer within the request's timeout (`status` 0). */
  | "TIMEOUT"
  /** A success status whose body is not what `openapi.json` promises. */
  | "UNEXPECTED_REPLY"
  /** A queued run gave no outcome within the wait `waitForRun` was given (`status` 0). */
  | "WAIT_TIMEOUT"
  /** A queued run ended without a result and without saying why. */
  | "RUN_LOST"
  /** The file's ETag changed between the ranges of one download. */
  | "FILE_CHANGED"
  /** The bytes sent or received do not hash to the SHA-256 the service reported. */
  | "CHECKSUM_MISMATCH";

/**
 * The service's codes and the client's own, so a `switch` on {@link PyboxError.code} autocompletes;
 * any other string stays possible because a newer service (or a queued run's failure, such as
 * `RUN_UNDELIVERABLE`) may name codes this client has not heard of.
 */
export type PyboxErrorCode = ServiceErrorCode | ClientErrorCode | (string & Record<never, never>);

/** Field-level validation issues the service gives with `INVALID_REQUEST`. */
export type ErrorDetails = NonNullable<ErrorBody["error"]["details"]>;

/** What {@link PyboxError} carries beyond status, code and message. */
export interface PyboxErrorOptions {
  /** How long the service asked the caller to wait before trying again (`Retry-After`). */
  retryAfterMs?: number;
  details?: ErrorDetails;
  cause?: unknown;
}

/**
 * Every failure the client reports, so a caller branches on the service's `code` (`KERNEL_BUSY`,
 * `CAPACITY`, …) instead of parsing messages or HTTP statuses. `message` is the service's own,
 * which it guarantees safe to show; nothing else of the response is kept.
 */
export class PyboxError extends Error {
  /** The HTTP status, or 0 when no answer came back. */
  readonly status: number;
  readonly code: PyboxErrorCode;
  readonly retryAfterMs: number | undefined;
  readonly details: ErrorDetails | undefined;

  constructor(status: number, code: PyboxErrorCode, message: string, options: PyboxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }
}

/**
 * A 404: the kernel, run or file does not exist for this caller — stopped, reaped, never made, or
 * another caller's (the service answers those alike on purpose).
 */
export class PyboxNotFoundError extends PyboxError {}

/** A 404 for a kernel, a run or a file, whatever the code says. */
export function isNotFound(error: unknown): error is PyboxNotFoundError {
  return error instanceof PyboxNotFoundError;
}

/** Reads `{"error": {"code", "message", "details"}}` without trusting its shape. */
function serviceErrorOf(
  body: unknown,
): { code: string; message: string; details?: ErrorDetails } | undefined {
  if (typeof body !== "object" || body === null || !("error" in body)) return undefined;
  const error = body.error;
  if (typeof error !== "object" || error === null) return undefined;
  if (!("code" in error) || typeof error.code !== "string") return undefined;
  const message = "message" in error && typeof error.message === "string" ? error.message : error.code;
  const details =
    "details" in error && Array.isArray(error.details) ? (error.details as ErrorDetails) : undefined;
  return details ? { code: error.code, message, details } : { code: error.code, message };
}

/** Refusals that waiting does not change: a deployment serving another caller only. */
const FINAL_CODES: ReadonlySet<string> = new Set(["HOST_SHARED"]);

/** Whether the service's error says a retry would be refused the same way, whatever its status. */
export function isFinalRefusal(body: unknown): boolean {
  const code = serviceErrorOf(body)?.code;
  return code !== undefined && FINAL_CODES.has(code);
}

/** Whether the body is the service's own error, which proves the service (not a proxy) answered. */
export function isServiceError(body: unknown): boolean {
  return serviceErrorOf(body) !== undefined;
}

/**
 * The error for an answer of status ≥ 400. `body` is what openapi-fetch made of it (parsed JSON,
 * or the raw text when it was not JSON); raw text is never copied into the message, since a
 * proxy's page may say things the service would not.
 */
export function errorFromResponse(response: Response, body: unknown, retryAfterMs?: number): PyboxError {
  const Class = response.status === 404 ? PyboxNotFoundError : PyboxError;
  const service = serviceErrorOf(body);
  if (service) {
    return new Class(response.status, service.code, service.message, {
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(service.details ? { details: service.details } : {}),
    });
  }
  // API Gateway's own refusals (`{"message": "Forbidden"}`) come before the service runs.
  const gatewayMessage =
    typeof body === "object" && body !== null && "message" in body && typeof body.message === "string"
      ? body.message
      : undefined;
  const message = gatewayMessage ?? (response.statusText || `HTTP ${response.status}`);
  return new Class(
    response.status,
    "HTTP_ERROR",
    message,
    retryAfterMs === undefined ? {} : { retryAfterMs },
  );
}
