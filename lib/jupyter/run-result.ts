import type { JupyterMessage } from "./messages.ts";

/** One displayed output: MIME type → payload (`text/plain` string, `image/png` base64, …). */
export type MimeBundle = Record<string, unknown>;

/** The Python exception a run ended in, as the kernel reported it (ANSI colours removed). */
export interface RunError {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** How a run ended: the code finished, raised, or was interrupted at its deadline. */
export type RunStatus = "ok" | "error" | "timeout";

/**
 * What a run displayed, in order. A superset of pybox's `PyBoxOut{data, error}`, so a pybox caller
 * reads it unchanged.
 */
export interface RunResult {
  status: RunStatus;
  data: MimeBundle[];
  error: RunError | null;
  executionCount: number | null;
  durationMs: number;
  truncated: boolean;
  /** Set when the kernel had to be restarted to end the run; its variables are gone. */
  restarted?: boolean;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC by definition.
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

/** Removes terminal colour codes, which only cost an agent tokens. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

interface Entry {
  bundle: MimeBundle;
  stream?: string;
  displayId?: string;
}

/**
 * Folds the iopub messages and the `execute_reply` of one `execute_request` into a RunResult.
 * Pure: it sees only messages already matched to the request, so it is tested on recorded
 * sequences and shared by every backend.
 */
export class RunCollector {
  private readonly entries: Entry[] = [];
  private error: RunError | null = null;
  private executionCount: number | null = null;
  private idle = false;
  private replied_ = false;
  private clearPending = false;
  private bytes = 0;
  /** No more output fits; reset by a clear, which gives the room back. */
  private full = false;
  /** Something was cut during the run; stays set. */
  private truncated = false;

  constructor(private readonly maxOutputBytes: number) {}

  /** True once both the reply (shell) and `status: idle` (iopub) have arrived, in either order. */
  get done(): boolean {
    return this.idle && this.replied_;
  }

  /** True once the `execute_reply` has arrived: the code has finished, whatever iopub still owes. */
  get replied(): boolean {
    return this.replied_;
  }

  /** True once the kernel has said it is idle again for this request. */
  get isIdle(): boolean {
    return this.idle;
  }

  /** Takes one iopub message whose parent is this request. */
  onIopub(message: JupyterMessage): void {
    const content = message.content;
    switch (message.header.msg_type) {
      case "status":
        if (content.execution_state === "idle") this.idle = true;
        return;
      case "execute_input":
        if (typeof content.execution_count === "number") this.executionCount = content.execution_count;
        return;
      case "stream":
        this.addStream(String(content.name ?? "stdout"), String(content.text ?? ""));
        return;
      case "execute_result":
      case "display_data":
        this.addBundle(asBundle(content.data), displayIdOf(content));
        return;
      case "update_display_data":
        this.updateDisplay(asBundle(content.data), displayIdOf(content));
        return;
      case "clear_output":
        if (content.wait === true) this.clearPending = true;
        else this.clear();
        return;
      case "error":
        this.error = toRunError(content);
        return;
      default:
        return;
    }
  }

  /** Takes the shell `execute_reply` of this request. */
  onReply(message: JupyterMessage): void {
    this.replied_ = true;
    const content = message.content;
    if (typeof content.execution_count === "number") this.executionCount = content.execution_count;
    if (content.status === "error" && this.error === null) this.error = toRunError(content);
    if (content.status === "aborted" && this.error === null) {
      this.error = { ename: "ExecutionAborted", evalue: "the kernel aborted this request", traceback: [] };
    }
  }

  /**
   * The result so far. `timeoutMs` marks a run interrupted at its deadline: its error says so and
   * keeps the interrupted traceback, which shows where the code was when time ran out.
   */
  result(durationMs: number, timeoutMs?: number): RunResult {
    const timedOut = timeoutMs !== undefined;
    return {
      status: timedOut ? "timeout" : this.error ? "error" : "ok",
      data: this.entries.map((entry) => ({ ...entry.bundle })),
      error: timedOut ? timeoutError(timeoutMs, this.error) : this.error,
      executionCount: this.executionCount,
      durationMs,
      truncated: this.truncated,
    };
  }

  private addStream(name: string, text: string): void {
    this.applyPendingClear();
    const last = this.entries.at(-1);
    if (last?.stream === name) {
      const kept = this.fit(text);
      last.bundle["text/plain"] = `${String(last.bundle["text/plain"])}${kept}`;
      return;
    }
    const kept = this.fit(text);
    if (kept.length > 0 || text.length === 0)
      this.entries.push({ bundle: { "text/plain": kept }, stream: name });
  }

  private addBundle(bundle: MimeBundle, displayId: string | undefined): void {
    this.applyPendingClear();
    if (!this.reserve(bundleBytes(bundle))) return;
    this.entries.push(displayId === undefined ? { bundle } : { bundle, displayId });
  }

  private updateDisplay(bundle: MimeBundle, displayId: string | undefined): void {
    if (displayId === undefined) return;
    for (const entry of this.entries) {
      if (entry.displayId !== displayId) continue;
      const old = bundleBytes(entry.bundle);
      this.bytes -= old;
      if (this.reserve(bundleBytes(bundle))) entry.bundle = bundle;
      else this.bytes += old;
    }
  }

  /** Counts `size` bytes against the cap; false (and `truncated`) when they do not fit. */
  private reserve(size: number): boolean {
    if (this.full || this.bytes + size > this.maxOutputBytes) {
      this.truncated = true;
      this.full = true;
      return false;
    }
    this.bytes += size;
    return true;
  }

  /** The part of `text` that still fits, cut on a character boundary. */
  private fit(text: string): string {
    if (this.full) return "";
    const size = Buffer.byteLength(text, "utf8");
    const room = this.maxOutputBytes - this.bytes;
    if (size <= room) {
      this.bytes += size;
      return text;
    }
    this.truncated = true;
    this.full = true;
    this.bytes = this.maxOutputBytes;
    return cutUtf8(text, Math.max(0, room));
  }

  private applyPendingClear(): void {
    if (this.clearPending) this.clear();
  }

  private clear(): void {
    this.clearPending = false;
    this.entries.length = 0;
    this.bytes = 0;
    this.full = false;
  }
}

function timeoutError(timeoutMs: number, interrupted: RunError | null): RunError {
  return {
    ename: "TimeoutError",
    evalue: `execution exceeded ${timeoutMs} ms and was interrupted`,
    traceback: interrupted?.ename === "KeyboardInterrupt" ? interrupted.traceback : [],
  };
}

function bundleBytes(bundle: MimeBundle): number {
  return Buffer.byteLength(JSON.stringify(bundle), "utf8");
}

/** The longest prefix of `text` within `maxBytes` of UTF-8 that ends on a whole character. */
function cutUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  let end = Math.min(maxBytes, bytes.length);
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

function asBundle(data: unknown): MimeBundle {
  return data !== null && typeof data === "object" && !Array.isArray(data) ? { ...(data as MimeBundle) } : {};
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const transient = content.transient;
  if (transient === null || typeof transient !== "object") return undefined;
  const id = (transient as Record<string, unknown>).display_id;
  return typeof id === "string" ? id : undefined;
}

function toRunError(content: Record<string, unknown>): RunError {
  const traceback = Array.isArray(content.traceback)
    ? content.traceback.map((line) => stripAnsi(String(line)))
    : [];
  return { ename: String(content.ename ?? "Error"), evalue: String(content.evalue ?? ""), traceback };
}
