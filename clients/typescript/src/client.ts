import createClient, { type Client, type PathSerializer } from "openapi-fetch";
import {
  type AwsCredentials,
  bearerAuth,
  FUNCTION_URL_HOST,
  signingRegion,
  sigv4Auth,
  type TokenSource,
} from "./auth.ts";
import {
  errorFromResponse,
  isFinalRefusal,
  isServiceError,
  PyboxError,
  PyboxNotFoundError,
} from "./errors.ts";
import {
  chunkRanges,
  encodeFilePath,
  etagDigest,
  FILE_CHUNK_BYTES,
  parseContentRange,
  sha256Hex,
} from "./files.ts";
import type { paths } from "./openapi.js";
import {
  neverConnected,
  RETRYABLE_STATUSES,
  type RetryOptions,
  retryAfterMs,
  retryDelayMs,
  retryPolicy,
  sleep,
} from "./retry.ts";
import type {
  FileInfo,
  FileListing,
  KernelView,
  RunEvent,
  RunResult,
  RunView,
  StartedKernel,
  StartOptions,
  UploadProgress,
} from "./types.ts";

/**
 * The longest run the synchronous route serves (the service's `SYNC_RUN_LIMIT_MS`, under API
 * Gateway's 30 s); a run given a longer timeout goes through the run queue instead.
 */
export const SYNC_RUN_LIMIT_MS = 20_000;

/**
 * Time a synchronous run's request gets beyond the run's own timeout: the service's interrupt,
 * a restart of a kernel that ignored it, and the answer.
 */
const SYNC_HEADROOM_MS = 12_000;

/** Time a queued run gets beyond its timeout to be picked up and reported. */
const QUEUE_HEADROOM_MS = 120_000;

/** Timeout of one request that is not a run (a start may launch a kernel: seconds on a cluster). */
const REQUEST_TIMEOUT_MS = 60_000;

/** How long one read of a queued run waits on the service for its end (its `waitMs`). */
const RESULT_WAIT_MS = 20_000;

/** The first pause between polls of a queued run; pauses double up to `pollMs`. */
const FIRST_POLL_MS = 50;

/** How a {@link PyboxClient} reaches and authenticates to the service. */
export interface PyboxClientOptions {
  /** The API's root, e.g. `http://127.0.0.1:8080` (`npm start`) or the stage URL of API Gateway. */
  baseUrl: string;
  /** Sends `Authorization: Bearer <token>`; a function is asked before every request. */
  token?: TokenSource;
  /** `"sigv4"` signs every request for `execute-api` (an IAM-authorized deployment). */
  auth?: "sigv4";
  /** The SigV4 region; default: the one an execute-api URL names, else `AWS_REGION`. */
  region?: string;
  /** SigV4 credentials or their provider; default `fromNodeProviderChain()` (env, profile, SSO, roles). */
  credentials?: AwsCredentials;
  /** The fetch to send with (a proxy agent, a test double); default `globalThis.fetch`. */
  fetch?: (request: Request) => Promise<Response>;
  /** How 429/503 and connection failures are retried (default: 5 attempts, 250 ms backoff base). */
  retry?: Partial<RetryOptions>;
  /** Timeout of each request that is not a run, ms (default 60 s). */
  requestTimeoutMs?: number;
  /**
   * Where {@link PyboxClient.stream} goes: the stack's `StreamUrl` on AWS (a Function URL; with
   * `auth: "sigv4"` signed for `lambda`); by default `baseUrl`, as `npm start` serves both.
   */
  streamUrl?: string;
  /**
   * Runs with a longer timeout than this go through the run queue. The service's limit (20 s) by
   * default; set it to a server's lower `PYBOX_MAX_RUN_TIMEOUT_MS`.
   */
  syncRunLimitMs?: number;
}

/** Lets a caller give up on any call (the retries and waits of it included). */
export interface CallOptions {
  signal?: AbortSignal;
}

/** How a run is bounded. */
export interface RunOptions extends CallOptions {
  /**
   * The run's timeout, ms; the kernel is interrupted past it and the result says `timeout`.
   * Default: the service's (20 s). Above the sync limit the run is queued and polled, unnoticed.
   */
  timeoutMs?: number;
}

/** A queued run's options. */
export interface RunAsyncOptions extends RunOptions {
  /** The run's id, so a repeated submit is the same run; a UUID when omitted. */
  runId?: string;
}

/** How long and how often {@link PyboxClient.waitForRun} asks. */
export interface WaitOptions extends CallOptions {
  /** Longest pause between polls, ms (they start at 50 ms and double). Default 1000. */
  pollMs?: number;
  /** Give up (`WAIT_TIMEOUT`) after this long, ms. Default: wait as long as the run takes. */
  timeoutMs?: number;
}

/** What a listing covers. */
export interface ListOptions extends CallOptions {
  /** The folder, relative to the working directory; the working directory itself by default. */
  path?: string;
  /** Include the contents of sub-folders. */
  recursive?: boolean;
}

/** How one request may be sent again. */
interface Sending extends CallOptions {
  /**
   * Whether the request may reach the service twice without harm. Only `POST …/run` may not: the
   * client names its kernels and queued runs itself, so every other route is safe to repeat.
   */
  replaySafe: boolean;
  timeoutMs: number;
}

/** What openapi-fetch answers, whatever the operation. */
interface Outcome<D> {
  data?: D;
  error?: unknown;
  response: Response;
}

/**
 * Path parameters as the service reads them: ids percent-encoded, and a file's path encoded per
 * segment so its `/` stay folder separators (openapi-fetch would encode them as `%2F`).
 */
const pathSerializer: PathSerializer = (pathname, parameters) =>
  pathname.replace(/\{([^{}]+)\}/g, (whole, name: string) => {
    const value = parameters[name];
    if (value === undefined || value === null) return whole;
    return name === "path" ? encodeFilePath(String(value)) : encodeURIComponent(String(value));
  });

/** A success body that is missing is not what `openapi.json` promises. */
function expect<T>(data: T | undefined, what: string): T {
  if (typeof data !== "object" || data === null) {
    throw new PyboxError(502, "UNEXPECTED_REPLY", `the service answered ${what} without a body`);
  }
  return data;
}

/** A timeout in whole milliseconds, as the service takes it. */
function wholeMs(ms: number, what: string): number {
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`${what} must be a positive number of ms`);
  return Math.max(1, Math.round(ms));
}

/** The system's reason for a failed fetch (`connect ECONNREFUSED …`), not fetch's bare "fetch failed". */
function reasonOf(error: unknown): string {
  let current = error;
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  return current instanceof Error ? current.message : String(current);
}

/** Whether a queued run has its outcome. */
function finished(view: RunView): boolean {
  return view.status !== "queued" && view.status !== "running";
}

/** A finished queued run's result, or the service's reason it has none. */
function outcomeOf(view: RunView): RunResult {
  if (view.result) return view.result;
  throw new PyboxError(
    409,
    view.error?.code ?? "RUN_LOST",
    view.error?.message ?? "the run ended without a result",
  );
}

/** `PUT` answers 202 with progress for every chunk but the last, then the file. */
function isFileInfo(body: FileInfo | UploadProgress): body is FileInfo {
  return "sha256" in body;
}

/**
 * The typed client of pybox-serverless: IPython kernels started, run and stopped over HTTP, and
 * files moved in and out of their working directories. Every call goes through the operations of
 * `openapi.json` (openapi-fetch on the generated types); failures are {@link PyboxError}s with the
 * service's code, and refusals that changed nothing (429, 503) are retried with backoff.
 */
export class PyboxClient {
  /** The API root requests go to, without a trailing slash. */
  readonly baseUrl: string;
  private readonly api: Client<paths>;
  private readonly streamApi: Client<paths>;
  private readonly retry: RetryOptions;
  private readonly requestTimeoutMs: number;
  private readonly syncRunLimitMs: number;

  constructor(options: PyboxClientOptions) {
    const baseUrl = options.baseUrl.replace(/\/+$/, "");
    new URL(baseUrl); // an unusable URL fails here, not at the first call
    if (options.token !== undefined && options.auth !== undefined) {
      throw new Error("pass token or auth: 'sigv4', not both");
    }
    if (options.auth === undefined && (options.credentials !== undefined || options.region !== undefined)) {
      throw new Error("credentials and region are for auth: 'sigv4'");
    }
    this.baseUrl = baseUrl;
    this.retry = retryPolicy(options.retry);
    this.requestTimeoutMs = wholeMs(options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS, "requestTimeoutMs");
    this.syncRunLimitMs = wholeMs(options.syncRunLimitMs ?? SYNC_RUN_LIMIT_MS, "syncRunLimitMs");
    const send = options.fetch ?? ((request: Request) => globalThis.fetch(request));
    this.api = createClient<paths>({ baseUrl, fetch: send, pathSerializer });
    const streamUrl = (options.streamUrl ?? baseUrl).replace(/\/+$/, "");
    this.streamApi =
      streamUrl === baseUrl
        ? this.api
        : createClient<paths>({ baseUrl: streamUrl, fetch: send, pathSerializer });
    const authenticate = (api: Client<paths>, url: string) => {
      if (options.token !== undefined) api.use(bearerAuth(options.token));
      if (options.auth === "sigv4") {
        const region = signingRegion(url, options.region);
        const service = FUNCTION_URL_HOST.test(new URL(url).hostname) ? "lambda" : "execute-api";
        api.use(
          sigv4Auth(
            options.credentials ? { region, service, credentials: options.credentials } : { region, service },
          ),
        );
      }
    };
    authenticate(this.api, baseUrl);
    if (this.streamApi !== this.api) authenticate(this.streamApi, streamUrl);
  }

  /**
   * Get-or-create: the caller's live kernel of that id (`created: false`), or a new one. Without a
   * `kernelId` the client names the kernel (a UUID), so a start that is retried after a lost answer
   * finds the kernel it made instead of making a second.
   */
  async start(options: StartOptions = {}, { signal }: CallOptions = {}): Promise<StartedKernel> {
    const body: StartOptions = { ...options, kernelId: options.kernelId ?? crypto.randomUUID() };
    const { data, response } = await this.send(
      (attempt) => this.api.POST("/kernels", { body, signal: attempt }),
      {
        replaySafe: true,
        timeoutMs: this.requestTimeoutMs,
        signal,
      },
    );
    return { ...expect(data, "a start"), created: response.status === 201 };
  }

  /** The kernel's record, liveness checked (`state: "dead"` once its process is gone). */
  async get(kernelId: string, { signal }: CallOptions = {}): Promise<KernelView> {
    const { data } = await this.send(
      (attempt) => this.api.GET("/kernels/{kernelId}", { params: { path: { kernelId } }, signal: attempt }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal },
    );
    return expect(data, "a kernel");
  }

  /** Stops the kernel. Idempotent: a kernel already gone (or never there) is success. */
  async stop(kernelId: string, { signal }: CallOptions = {}): Promise<void> {
    try {
      await this.send(
        (attempt) =>
          this.api.DELETE("/kernels/{kernelId}", { params: { path: { kernelId } }, signal: attempt }),
        { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal },
      );
    } catch (error) {
      if (!(error instanceof PyboxNotFoundError)) throw error;
    }
  }

  /**
   * Runs code and returns what it displayed. Up to the sync limit it is one `POST …/run`, which is
   * never sent twice unless the service proved it refused it; past it, the run is queued and polled
   * until it has a result, so long work never meets API Gateway's 30 s limit.
   */
  async run(kernelId: string, code: string, options: RunOptions = {}): Promise<RunResult> {
    const { signal } = options;
    const timeoutMs = options.timeoutMs === undefined ? undefined : wholeMs(options.timeoutMs, "timeoutMs");
    if (timeoutMs !== undefined && timeoutMs > this.syncRunLimitMs) {
      const view = await this.runAsync(kernelId, code, { timeoutMs, ...(signal ? { signal } : {}) });
      if (finished(view)) return outcomeOf(view);
      return this.waitForRun(kernelId, view.runId, {
        timeoutMs: timeoutMs + QUEUE_HEADROOM_MS,
        ...(signal ? { signal } : {}),
      });
    }
    const body = timeoutMs === undefined ? { code } : { code, timeoutMs };
    const { data } = await this.send(
      (attempt) =>
        this.api.POST("/kernels/{kernelId}/run", { params: { path: { kernelId } }, body, signal: attempt }),
      { replaySafe: false, timeoutMs: (timeoutMs ?? this.syncRunLimitMs) + SYNC_HEADROOM_MS, signal },
    );
    return expect(data, "a run");
  }

  /**
   * Runs code and yields its outputs as the kernel produces them (Server-Sent Events), then `done`
   * with the whole RunResult. A streamed run has the synchronous route's limits (20 s) and is never
   * sent twice. Leaving the loop early, or aborting `signal`, hangs up: the service interrupts the run.
   */
  async *stream(kernelId: string, code: string, options: RunOptions = {}): AsyncGenerator<RunEvent> {
    const timeoutMs = options.timeoutMs === undefined ? undefined : wholeMs(options.timeoutMs, "timeoutMs");
    const hangUp = new AbortController();
    const onAbort = () => hangUp.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const { data, error, response } = await this.streamApi.POST("/kernels/{kernelId}/run", {
        params: { path: { kernelId } },
        body: timeoutMs === undefined ? { code } : { code, timeoutMs },
        headers: { accept: "text/event-stream" },
        parseAs: "stream",
        signal: hangUp.signal,
      });
      if (!response.ok || !data) {
        throw errorFromResponse(response, error, retryAfterMs(response.headers.get("retry-after")));
      }
      if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
        await data.cancel();
        throw new PyboxError(
          502,
          "NOT_A_STREAM",
          "the service answered a streamed run without events; on AWS pass the stack's StreamUrl as streamUrl",
        );
      }
      let done = false;
      for await (const event of runEvents(data)) {
        done ||= event.event === "done";
        yield event;
      }
      if (!done) throw new PyboxError(502, "STREAM_CUT", "the streamed run's answer ended before its result");
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      hangUp.abort();
    }
  }

  /**
   * Queues a run and returns at once (202) with its view; its `runId` is the client's (a UUID
   * unless given), so a submit retried after a lost answer is the same run, never a second one.
   */
  async runAsync(kernelId: string, code: string, options: RunAsyncOptions = {}): Promise<RunView> {
    const runId = options.runId ?? crypto.randomUUID();
    const body =
      options.timeoutMs === undefined
        ? { code, runId }
        : { code, runId, timeoutMs: wholeMs(options.timeoutMs, "timeoutMs") };
    const { data } = await this.send(
      (attempt) =>
        this.api.POST("/kernels/{kernelId}/runs", { params: { path: { kernelId } }, body, signal: attempt }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal: options.signal },
    );
    return expect(data, "a queued run");
  }

  /** A queued run as it stands: status, and its result once it has ended. */
  async getRun(
    kernelId: string,
    runId: string,
    { signal, waitMs }: CallOptions & { waitMs?: number } = {},
  ): Promise<RunView> {
    const { data } = await this.send(
      (attempt) =>
        this.api.GET("/kernels/{kernelId}/runs/{runId}", {
          params: {
            path: { kernelId, runId },
            ...(waitMs === undefined ? {} : { query: { waitMs: String(wholeMs(waitMs, "waitMs")) } }),
          },
          signal: attempt,
        }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs + (waitMs ?? 0), signal },
    );
    return expect(data, "a queued run");
  }

  /**
   * Polls a queued run until it ends and returns its result (a timeout is a result). A run that
   * ended without one (the kernel died or was stopped, the run was lost) is a {@link PyboxError}
   * with the service's reason as its code.
   */
  async waitForRun(kernelId: string, runId: string, options: WaitOptions = {}): Promise<RunResult> {
    const { signal } = options;
    const pollMs = wholeMs(options.pollMs ?? 1_000, "pollMs");
    const deadline =
      options.timeoutMs === undefined
        ? Number.POSITIVE_INFINITY
        : Date.now() + wholeMs(options.timeoutMs, "timeoutMs");
    let pause = Math.min(FIRST_POLL_MS, pollMs);
    for (;;) {
      // A long poll: the service answers when the run ends, or when the wait is over.
      const waitMs = Math.max(1, Math.min(RESULT_WAIT_MS, deadline - Date.now()));
      const asked = Date.now();
      const view = await this.getRun(kernelId, runId, { waitMs, ...(signal ? { signal } : {}) });
      if (finished(view)) return outcomeOf(view);
      if (Date.now() + pause > deadline) {
        throw new PyboxError(0, "WAIT_TIMEOUT", `queued run ${runId} is still ${view.status}`);
      }
      // A service that answered an unfinished run well before the wait (one without long polls) is
      // asked again after a backoff, as before.
      if (Date.now() - asked < waitMs / 2) {
        await sleep(pause, signal);
        pause = Math.min(pause * 2, pollMs);
      }
    }
  }

  /**
   * Writes a file into the kernel's working directory (parent folders made). Over 4 MiB it goes
   * in order in 4 MiB chunks with `Content-Range`, as the service takes them; the file appears
   * under its name only once the last is in. The answer's SHA-256 is checked against the bytes.
   */
  async upload(
    kernelId: string,
    path: string,
    data: Uint8Array | string,
    { signal }: CallOptions = {},
  ): Promise<FileInfo> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const digest = await sha256Hex(bytes);
    let info: FileInfo | undefined;
    if (bytes.byteLength <= FILE_CHUNK_BYTES) {
      const body = await this.putFile(kernelId, path, bytes, undefined, signal);
      if (isFileInfo(body)) info = body;
    } else {
      const total = bytes.byteLength;
      for (const [first, last] of chunkRanges(total)) {
        const range = `bytes ${first}-${last}/${total}`;
        const body = await this.putFile(kernelId, path, bytes.subarray(first, last + 1), range, signal);
        if (isFileInfo(body)) {
          info = body;
          break;
        }
        if (body.received !== last + 1) {
          throw new PyboxError(
            502,
            "UNEXPECTED_REPLY",
            `after ${range} the service had ${body.received} bytes`,
          );
        }
      }
    }
    if (!info)
      throw new PyboxError(502, "UNEXPECTED_REPLY", `the upload of ${path} ended without the file's info`);
    if (info.sha256 !== digest) {
      throw new PyboxError(
        502,
        "CHECKSUM_MISMATCH",
        `${path} was stored with another SHA-256 than the bytes sent`,
      );
    }
    return info;
  }

  /**
   * Reads a file of the kernel's working directory. It asks for the first 4 MiB and goes on by the
   * total `Content-Range` gives, so a small file is one request and a large one (which the
   * service will not send whole) needs no size known beforehand. Every part must carry the same
   * ETag (`FILE_CHANGED` otherwise) and the bytes must hash to it.
   */
  async download(kernelId: string, path: string, { signal }: CallOptions = {}): Promise<Uint8Array> {
    const head = await this.getFile(kernelId, path, 0, signal);
    const etag = head.response.headers.get("etag");
    let bytes: Uint8Array;
    if (head.response.status !== 206) {
      bytes = head.bytes; // the whole file: an empty one, or a server that ignores Range
    } else {
      const { total } = this.checkPart(head, 0, undefined);
      bytes = new Uint8Array(total);
      bytes.set(head.bytes, 0);
      let offset = head.bytes.byteLength;
      while (offset < total) {
        const part = await this.getFile(kernelId, path, offset, signal);
        if (part.response.headers.get("etag") !== etag || part.response.status !== 206) {
          throw new PyboxError(
            409,
            "FILE_CHANGED",
            `${path} changed while it was being downloaded; read it again`,
          );
        }
        this.checkPart(part, offset, total);
        bytes.set(part.bytes, offset);
        offset += part.bytes.byteLength;
      }
    }
    const expected = etagDigest(etag);
    if (expected !== undefined && (await sha256Hex(bytes)) !== expected) {
      throw new PyboxError(502, "CHECKSUM_MISMATCH", `the bytes of ${path} do not match its ETag`);
    }
    return bytes;
  }

  /** The files and folders under a folder of the working directory, sorted by path; capped (`truncated`). */
  async list(kernelId: string, options: ListOptions = {}): Promise<FileListing> {
    const query = {
      recursive: options.recursive ? ("true" as const) : ("false" as const),
      ...(options.path ? { path: options.path } : {}),
    };
    const { data } = await this.send(
      (attempt) =>
        this.api.GET("/kernels/{kernelId}/files", { params: { path: { kernelId }, query }, signal: attempt }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal: options.signal },
    );
    return expect(data, "a listing");
  }

  /** Deletes a file (or an empty folder) of the working directory; a missing one is a 404. */
  async remove(kernelId: string, path: string, { signal }: CallOptions = {}): Promise<void> {
    await this.send(
      (attempt) =>
        this.api.DELETE("/kernels/{kernelId}/files/{path}", {
          params: { path: { kernelId, path } },
          signal: attempt,
        }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal },
    );
  }

  /** One `PUT` of a file or of one chunk of it. */
  private async putFile(
    kernelId: string,
    path: string,
    bytes: Uint8Array,
    contentRange: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<FileInfo | UploadProgress> {
    const { data } = await this.send(
      (attempt) =>
        this.api.PUT("/kernels/{kernelId}/files/{path}", {
          params: {
            path: { kernelId, path },
            ...(contentRange === undefined ? {} : { header: { "content-range": contentRange } }),
          },
          body: bytes,
          bodySerializer: (body) => body,
          headers: { "content-type": "application/octet-stream" },
          signal: attempt,
        }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal },
    );
    return expect(data, "an upload");
  }

  /** One ranged `GET` of at most 4 MiB from `first`. */
  private async getFile(
    kernelId: string,
    path: string,
    first: number,
    signal: AbortSignal | undefined,
  ): Promise<{ bytes: Uint8Array; response: Response }> {
    const { data, response } = await this.send(
      (attempt) =>
        this.api.GET("/kernels/{kernelId}/files/{path}", {
          params: {
            path: { kernelId, path },
            header: { range: `bytes=${first}-${first + FILE_CHUNK_BYTES - 1}` },
          },
          parseAs: "arrayBuffer",
          signal: attempt,
        }),
      { replaySafe: true, timeoutMs: this.requestTimeoutMs, signal },
    );
    return { bytes: data === undefined ? new Uint8Array(0) : new Uint8Array(data), response };
  }

  /** A part must start where the last ended, be as long as it says and belong to the same whole. */
  private checkPart(
    part: { bytes: Uint8Array; response: Response },
    offset: number,
    total: number | undefined,
  ): { total: number } {
    const range = parseContentRange(part.response.headers.get("content-range"));
    const length = part.bytes.byteLength;
    if (range.first !== offset || range.last - range.first + 1 !== length || length === 0) {
      throw new PyboxError(
        502,
        "UNEXPECTED_REPLY",
        `asked for bytes from ${offset}, got ${range.first}-${range.last}`,
      );
    }
    if (total !== undefined && range.total !== total) {
      throw new PyboxError(409, "FILE_CHANGED", "the file's size changed while it was being downloaded");
    }
    return { total: range.total };
  }

  /**
   * Sends one operation, retrying what the service refused without acting (429, 503) after its
   * `Retry-After` or a jittered backoff, and connection failures when the request may be repeated
   * (or provably never arrived). Every attempt has its own timeout; the caller's signal ends all.
   */
  private async send<D>(
    attempt: (signal: AbortSignal) => Promise<Outcome<D>>,
    how: Sending,
  ): Promise<{ data: D | undefined; response: Response }> {
    for (let n = 0; ; n++) {
      const last = n >= this.retry.attempts - 1;
      const timeout = AbortSignal.timeout(how.timeoutMs);
      const signal = how.signal ? AbortSignal.any([how.signal, timeout]) : timeout;
      let outcome: Outcome<D>;
      try {
        outcome = await attempt(signal);
      } catch (error) {
        if (error instanceof PyboxError) throw error;
        if (how.signal?.aborted) throw how.signal.reason;
        if (timeout.aborted) {
          throw new PyboxError(0, "TIMEOUT", `no answer from ${this.baseUrl} within ${how.timeoutMs} ms`, {
            cause: error,
          });
        }
        if (error instanceof SyntaxError) {
          throw new PyboxError(502, "UNEXPECTED_REPLY", "the service's answer was not valid JSON", {
            cause: error,
          });
        }
        if (last || !(how.replaySafe || neverConnected(error))) {
          throw new PyboxError(0, "UNREACHABLE", `cannot reach ${this.baseUrl}: ${reasonOf(error)}`, {
            cause: error,
          });
        }
        await sleep(retryDelayMs(this.retry, n), how.signal);
        continue;
      }
      const { response } = outcome;
      if (response.ok) return { data: outcome.data, response };
      const after = retryAfterMs(response.headers.get("retry-after"));
      // A bare 503 from a proxy in front (API Gateway's own timeout) does not prove nothing ran.
      const refused =
        RETRYABLE_STATUSES.has(response.status) &&
        !isFinalRefusal(outcome.error) &&
        (how.replaySafe || isServiceError(outcome.error));
      if (!refused || last) throw errorFromResponse(response, outcome.error, after);
      await sleep(retryDelayMs(this.retry, n, after), how.signal);
    }
  }
}

/** The events of a `text/event-stream` body, in the shapes of {@link RunEvent}; `failed` throws. */
async function* runEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<RunEvent> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of body) {
    pending += decoder.decode(chunk, { stream: true });
    for (let end = pending.indexOf("\n\n"); end >= 0; end = pending.indexOf("\n\n")) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const name = /^event: ?(.*)$/m.exec(block)?.[1] ?? "message";
      const data = JSON.parse(
        block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n") || "null",
      ) as Record<string, unknown>;
      if (name === "failed") {
        const failure = (data.error ?? {}) as { code?: string; message?: string };
        throw new PyboxError(502, failure.code ?? "FAILED", failure.message ?? "the streamed run failed");
      }
      if (name === "done") yield { event: "done", result: data as RunResult };
      else if (name === "error") yield { event: "error", error: data as NonNullable<RunResult["error"]> };
      else if (name === "stream") yield { event: "stream", name: String(data.name), text: String(data.text) };
      else if (name === "display" || name === "result") {
        yield { event: name, data: (data.data ?? {}) as Record<string, unknown> };
      }
    }
  }
}
