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

  runStatus(kernelId: string, runId: string) {
    return this.request<RunViewBody>(
      "GET",
      `/kernels/${encodeURIComponent(kernelId)}/runs/${encodeURIComponent(runId)}`,
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
