import { request as httpRequest } from "node:http";

/** A response as a test reads it: status, parsed JSON body (or null), headers. */
export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

/** A RunResult as the API returns it. */
export interface RunResultBody {
  status: "ok" | "error" | "timeout";
  data: Array<Record<string, unknown>>;
  error: { ename: string; evalue: string; traceback: string[] } | null;
  executionCount: number | null;
  durationMs: number;
  truncated: boolean;
  /** Files under the working directory this run created or changed, newest first. */
  artifacts?: Array<{ path: string; size: number; mtime: string }>;
  artifactsTruncated?: boolean;
}

/** A queued run as the API returns it. */
export interface RunViewBody {
  runId: string;
  kernelId: string;
  status: "queued" | "running" | "ok" | "error" | "timeout";
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  result?: RunResultBody;
  error?: { code: string; message: string };
}

/** A response whose body is bytes (files): status, headers, the raw body and, when it is JSON, the parsed body. */
export interface BinaryResponse<T = unknown> {
  status: number;
  headers: Headers;
  bytes: Buffer;
  /** The body parsed as JSON, or null when it is empty or not JSON. */
  body: T | null;
  /** The body as UTF-8 text, for messages. */
  text: string;
}

/** A file as a write left it (`PUT` 200/201). */
export interface FileInfoBody {
  path: string;
  size: number;
  mtime: string;
  sha256: string;
}

/** A chunked upload under way (`PUT` with `Content-Range`, 202). */
export interface UploadProgressBody {
  path: string;
  received: number;
}

/** One entry of a listing. */
export interface FileEntryBody {
  path: string;
  size: number;
  mtime: string;
  kind: "file" | "dir";
}

/** `GET /kernels/{kernelId}/files`. */
export interface FileListingBody {
  files: FileEntryBody[];
  truncated: boolean;
}

/** The API's error body. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** A `Content-Range` as numbers (`bytes start-end/total`, end included), or verbatim header text. */
export type ContentRangeHeader = { start: number; end: number; total: number } | string;

/** A `Range` as numbers (`bytes=start-end`, or `bytes=start-` without `end`), or verbatim header text. */
export type RangeHeader = { start: number; end?: number } | string;

/** `kernels/{kernelId}/files/{path}` with each segment of `path` percent-encoded, as a client library sends it. */
export function filesPath(kernelId: string, path: string): string {
  return `/kernels/${encodeURIComponent(kernelId)}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
}

/**
 * A thin HTTP client for the product's API, as an agent would use it: a base URL and a bearer
 * token that names the caller.
 */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly caller?: string,
  ) {}

  /** The same API as another caller. */
  as(caller: string): ApiClient {
    return new ApiClient(this.baseUrl, caller);
  }

  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.caller) headers.authorization = `Bearer ${this.caller}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const response = await fetch(`${this.baseUrl}${path}`, init);
    const text = await response.text();
    return {
      status: response.status,
      body: (text ? JSON.parse(text) : null) as T,
      headers: response.headers,
      text,
    };
  }

  /**
   * Sends a request with its path exactly as given (no URL normalisation: `..` and `%2F` reach the
   * server as written) and a raw body, and reads the answer as bytes.
   */
  raw<T = unknown>(
    method: string,
    path: string,
    options: { body?: Buffer | string; headers?: Record<string, string> } = {},
  ): Promise<BinaryResponse<T>> {
    const url = new URL(this.baseUrl);
    const headers: Record<string, string> = { ...options.headers };
    if (this.caller) headers.authorization = `Bearer ${this.caller}`;
    if (options.body !== undefined) headers["content-length"] = String(Buffer.byteLength(options.body));
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const bytes = Buffer.concat(chunks);
          const text = bytes.toString("utf8");
          const responseHeaders = new Headers();
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined)
              responseHeaders.set(name, Array.isArray(value) ? value.join(", ") : value);
          }
          let body: T | null = null;
          if (/json/.test(responseHeaders.get("content-type") ?? "") && text) {
            try {
              body = JSON.parse(text) as T;
            } catch {
              body = null;
            }
          }
          resolve({ status: res.statusCode ?? 0, headers: responseHeaders, bytes, body, text });
        });
      });
      req.on("error", reject);
      req.end(options.body);
    });
  }

  /**
   * Writes a file (`PUT …/files/{path}`), or one chunk of it when `contentRange` is given. `path`
   * is encoded segment by segment; `rawPath: true` sends it verbatim instead.
   */
  putFile(
    kernelId: string,
    path: string,
    bytes: Buffer | string,
    options: { contentRange?: ContentRangeHeader; rawPath?: boolean; contentType?: string } = {},
  ) {
    const headers: Record<string, string> = {
      "content-type": options.contentType ?? "application/octet-stream",
    };
    if (options.contentRange !== undefined) headers["content-range"] = contentRangeText(options.contentRange);
    return this.raw<FileInfoBody | UploadProgressBody | ErrorBody>(
      "PUT",
      this.fileUrl(kernelId, path, options),
      {
        body: bytes,
        headers,
      },
    );
  }

  /** Reads a file (`GET …/files/{path}`), or a part of it with `range`. */
  getFile(kernelId: string, path: string, options: { range?: RangeHeader; rawPath?: boolean } = {}) {
    const headers: Record<string, string> = {};
    if (options.range !== undefined) headers.range = rangeText(options.range);
    return this.raw<ErrorBody>("GET", this.fileUrl(kernelId, path, options), { headers });
  }

  /** Removes a file (`DELETE …/files/{path}`). */
  deleteFile(kernelId: string, path: string, options: { rawPath?: boolean } = {}) {
    return this.raw<ErrorBody>("DELETE", this.fileUrl(kernelId, path, options));
  }

  /** Lists a folder (`GET …/files?path=&recursive=`); no `path` is the working directory. */
  listFiles(kernelId: string, options: { path?: string; recursive?: boolean } = {}) {
    const query = new URLSearchParams();
    if (options.path !== undefined) query.set("path", options.path);
    if (options.recursive !== undefined) query.set("recursive", String(options.recursive));
    const search = query.size > 0 ? `?${query}` : "";
    return this.raw<FileListingBody & ErrorBody>(
      "GET",
      `/kernels/${encodeURIComponent(kernelId)}/files${search}`,
    );
  }

  private fileUrl(kernelId: string, path: string, options: { rawPath?: boolean }): string {
    return options.rawPath
      ? `/kernels/${encodeURIComponent(kernelId)}/files/${path}`
      : filesPath(kernelId, path);
  }

  start(body: Record<string, unknown> = {}) {
    return this.request("POST", "/kernels", body);
  }

  get(kernelId: string) {
    return this.request("GET", `/kernels/${encodeURIComponent(kernelId)}`);
  }

  run(kernelId: string, code: string, timeoutMs?: number) {
    const body = timeoutMs === undefined ? { code } : { code, timeoutMs };
    return this.request<RunResultBody>("POST", `/kernels/${encodeURIComponent(kernelId)}/run`, body);
  }

  stop(kernelId: string) {
    return this.request("DELETE", `/kernels/${encodeURIComponent(kernelId)}`);
  }

  enqueue(kernelId: string, body: { code: string; timeoutMs?: number; runId?: string }) {
    return this.request<RunViewBody>("POST", `/kernels/${encodeURIComponent(kernelId)}/runs`, body);
  }

  /** A queued run as it stands, or (with `waitMs`) once it ended or the wait is over. */
  runStatus(kernelId: string, runId: string, waitMs?: number | string) {
    const query = waitMs === undefined ? "" : `?waitMs=${encodeURIComponent(String(waitMs))}`;
    return this.request<RunViewBody>(
      "GET",
      `/kernels/${encodeURIComponent(kernelId)}/runs/${encodeURIComponent(runId)}${query}`,
    );
  }

  /** Polls a queued run until it has ended, as an agent would. */
  async waitForRun(kernelId: string, runId: string, timeoutMs = 60_000): Promise<RunViewBody> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const res = await this.runStatus(kernelId, runId);
      if (res.status !== 200) throw new Error(`run status failed: ${res.status} ${res.text}`);
      if (res.body.status !== "queued" && res.body.status !== "running") return res.body;
      if (Date.now() > deadline) throw new Error(`run ${runId} still ${res.body.status}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Runs code that must succeed and returns its first `text/plain` output. */
  async eval(kernelId: string, code: string): Promise<string> {
    const res = await this.run(kernelId, code);
    if (res.status !== 200 || res.body.status !== "ok") {
      throw new Error(`eval failed: ${res.status} ${res.text}`);
    }
    return String(res.body.data[0]?.["text/plain"] ?? "");
  }
}

function contentRangeText(range: ContentRangeHeader): string {
  return typeof range === "string" ? range : `bytes ${range.start}-${range.end}/${range.total}`;
}

function rangeText(range: RangeHeader): string {
  return typeof range === "string" ? range : `bytes=${range.start}-${range.end ?? ""}`;
}
