/**
 * When a request is sent again. The service answers 429 (CAPACITY) and 503 (*_UNAVAILABLE,
 * KERNEL_LAUNCH_FAILED) only when it did nothing, so those are retried for every route, as the
 * Python client does; everything else is the caller's to handle.
 */

/** HTTP statuses that mean "nothing happened, try again later". */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 503]);

/** How often and how patiently a refused request is sent again. */
export interface RetryOptions {
  /** Attempts in all, the first included (1 turns retries off). Default 5. */
  attempts: number;
  /** Backoff base: attempt n waits a random time up to `baseDelayMs · 2ⁿ`. Default 250 ms. */
  baseDelayMs: number;
  /** Most one wait may last, whatever `Retry-After` says. Default 30 s. */
  maxDelayMs: number;
}

/** The Python client's policy, so both clients are equally patient with one service. */
export const DEFAULT_RETRY: Readonly<RetryOptions> = { attempts: 5, baseDelayMs: 250, maxDelayMs: 30_000 };

/** The policy from the constructor's partial options, checked once. */
export function retryPolicy(options: Partial<RetryOptions> = {}): RetryOptions {
  const policy = { ...DEFAULT_RETRY, ...options };
  if (!Number.isInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError("retry.attempts must be a whole number ≥ 1");
  }
  if (!(policy.baseDelayMs >= 0) || !(policy.maxDelayMs >= 0)) {
    throw new RangeError("retry delays must be ≥ 0 ms");
  }
  return policy;
}

/**
 * `Retry-After` in milliseconds: delta-seconds (what the service sends) or an HTTP-date (what a
 * proxy may send); undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  const text = header.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before attempt `attempt + 1` (attempt 0 is the first): the server's `Retry-After` when it
 * gave one, else exponential backoff with full jitter, so clients refused together do not return
 * together; both capped at `maxDelayMs`.
 */
export function retryDelayMs(policy: RetryOptions, attempt: number, after?: number): number {
  if (after !== undefined) return Math.min(after, policy.maxDelayMs);
  return Math.random() * Math.min(policy.baseDelayMs * 2 ** attempt, policy.maxDelayMs);
}

/** System error codes that mean the connection was never made, so the request never arrived. */
const NOT_CONNECTED = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * Whether a failed fetch never reached the server (connection refused, DNS, connect timeout): only
 * then is sending a request that must not run twice again still safe. fetch wraps the system
 * error as the `cause` of a `TypeError`, sometimes twice.
 */
export function neverConnected(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth++) {
    const code = (current as Error & { code?: unknown }).code;
    if (typeof code === "string" && NOT_CONNECTED.has(code)) return true;
    current = current.cause;
  }
  return false;
}

/** Waits, unless the caller gives up first (then rejects with the signal's reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
