import type { MimeBundle, RunError, RunResult } from "../core/run-result.ts";
import type { JupyterMessage } from "./messages.ts";
import {
  cutText,
  type Fitted,
  fitBundle,
  fitError,
  responseBytes,
  TEXT_PLAIN,
  textBytes,
} from "./output-limits.ts";

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escapes start with ESC by definition.
const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

/** Removes terminal colour codes, which only cost an agent tokens. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/**
 * The caps a run's output is kept within, in response bytes (see `output-limits.ts`), so that its
 * RunResult, as the Lambda response carries it, is at most `maxOutputBytes` plus
 * {@link RESULT_OVERHEAD_BYTES}.
 */
export interface OutputLimits {
  /** Everything the run showed: every entry of `data`, and the error. */
  maxOutputBytes: number;
  /**
   * One entry of `data` (a merged stream, one display), and the error. Keeps one huge output
   * (a plot, a runaway print) from crowding out everything after it; at most `maxOutputBytes`.
   */
  maxEntryBytes: number;
}

/**
 * What a RunResult may take in the response beyond its `maxOutputBytes`: its fixed fields
 * (status, counts, flags, brackets) and the message of a timeout, which is added after the run.
 */
export const RESULT_OVERHEAD_BYTES = 512;

interface Entry {
  bundle: MimeBundle;
  /** Response bytes of the bundle (an upper bound for a stream, counted chunk by chunk). */
  bytes: number;
  stream?: string;
  /** A stream entry that reached the entry cap: the rest of its text is dropped. */
  capped?: boolean;
  displayId?: string;
}

/** Response bytes of a stream entry before any text: `{"text/plain":""}`. */
const STREAM_ENTRY_BYTES = responseBytes({ [TEXT_PLAIN]: "" });

/**
 * Folds the iopub messages and the `execute_reply` of one `execute_request` into a RunResult.
 * Pure: it sees only messages already matched to the request, so it is tested on recorded
 * sequences and shared by every backend.
 *
 * Output is kept within {@link OutputLimits} as it arrives, so a run printing gigabytes holds no
 * more than the caps: a stream is cut on a character boundary, a rich value too large is dropped whole (its
 * `text/plain` kept if it fits), and once the total is reached later output is dropped. The error
 * is bounded too but never dropped: output is cut back to make room for it. Whatever is cut sets
 * `truncated`.
 */
export class RunCollector {
  private readonly entries: Entry[] = [];
  private error: RunError | null = null;
  private executionCount: number | null = null;
  private idle = false;
  private replied_ = false;
  private clearPending = false;
  /** Response bytes counted: entries with their separating commas, and the error. */
  private bytes = 0;
  private errorBytes = 0;
  /** No more output fits; reset by a clear, which gives the room back. */
  private full = false;
  /** Something was cut during the run; stays set. */
  private truncated = false;
  private readonly maxOutputBytes: number;
  private readonly maxEntryBytes: number;

  constructor(limits: OutputLimits) {
    this.maxOutputBytes = limits.maxOutputBytes;
    this.maxEntryBytes = Math.min(limits.maxEntryBytes, limits.maxOutputBytes);
  }

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
        this.setError(toRunError(content));
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
    if (content.status === "error" && this.error === null) this.setError(toRunError(content));
    if (content.status === "aborted" && this.error === null) {
      this.setError({ ename: "ExecutionAborted", evalue: "the kernel aborted this request", traceback: [] });
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
      // The files the run made come in its reply, not its output (see `artifacts.ts`).
      artifacts: [],
    };
  }

  /** Room left in the total for one more entry: its bytes plus the comma before it. */
  private get room(): number {
    return this.maxOutputBytes - this.bytes - 1;
  }

  private addStream(name: string, text: string): void {
    this.applyPendingClear();
    const last = this.entries.at(-1);
    const entry = last?.stream === name ? last : undefined;
    if (this.full || entry?.capped) {
      if (text !== "") this.truncated = true;
      return;
    }
    if (entry) {
      this.bytes += this.appendText(entry, text, this.maxOutputBytes - this.bytes);
      return;
    }
    const room = this.room - STREAM_ENTRY_BYTES;
    if (room < 0) {
      this.truncated = true;
      this.full = true;
      return;
    }
    const fresh: Entry = { bundle: { [TEXT_PLAIN]: "" }, bytes: STREAM_ENTRY_BYTES, stream: name };
    if (this.appendText(fresh, text, room) === 0 && text !== "") return;
    this.entries.push(fresh);
    this.bytes += fresh.bytes + 1;
  }

  /**
   * Adds what fits of `text` to a stream entry: within the entry cap and `totalRoom`. Reaching the
   * entry cap drops the rest of this entry only; reaching the total drops all later output.
   * Returns the response bytes added.
   */
  private appendText(entry: Entry, text: string, totalRoom: number): number {
    const entryRoom = this.maxEntryBytes - entry.bytes;
    const room = Math.max(0, Math.min(entryRoom, totalRoom));
    // Every UTF-16 unit costs at least a byte, so a chunk longer than the room is cut unmeasured.
    let kept = text;
    let bytes = text.length <= room ? textBytes(text) : Number.POSITIVE_INFINITY;
    if (bytes > room) {
      kept = cutText(text, room);
      bytes = textBytes(kept);
      this.truncated = true;
      if (totalRoom <= entryRoom) this.full = true;
      else entry.capped = true;
    }
    if (kept === "") return 0;
    entry.bundle[TEXT_PLAIN] = `${String(entry.bundle[TEXT_PLAIN])}${kept}`;
    entry.bytes += bytes;
    return bytes;
  }

  private addBundle(bundle: MimeBundle, displayId: string | undefined): void {
    this.applyPendingClear();
    if (this.full) {
      this.truncated = true;
      return;
    }
    const fitted = this.fit(bundle, this.room);
    if (fitted.value === undefined) return;
    this.entries.push({
      bundle: fitted.value,
      bytes: fitted.bytes,
      ...(displayId === undefined ? {} : { displayId }),
    });
    this.bytes += fitted.bytes + 1;
  }

  private updateDisplay(bundle: MimeBundle, displayId: string | undefined): void {
    if (displayId === undefined) return;
    for (const entry of this.entries) {
      if (entry.displayId !== displayId) continue;
      const fitted = this.fit(bundle, this.room + entry.bytes + 1);
      // An update with nothing left to show keeps what was there; `truncated` says it is stale.
      if (fitted.value === undefined) continue;
      this.bytes += fitted.bytes - entry.bytes;
      entry.bundle = fitted.value;
      entry.bytes = fitted.bytes;
    }
  }

  /**
   * Fits a bundle to the entry cap, then to the `room` left in the total; reaching the total
   * means later output is dropped.
   */
  private fit(bundle: MimeBundle, room: number): Fitted<MimeBundle> {
    const entry = fitBundle(bundle, this.maxEntryBytes);
    if (entry.cut) this.truncated = true;
    if (entry.value === undefined || entry.bytes <= room) return entry;
    this.truncated = true;
    this.full = true;
    return room < 0 ? { value: undefined, bytes: 0, cut: true } : fitBundle(entry.value, room);
  }

  /** Keeps the error within the entry cap, and cuts output back from its end to make room for it. */
  private setError(error: RunError): void {
    const fitted = fitError(error, this.maxEntryBytes);
    if (fitted.cut) this.truncated = true;
    this.bytes += fitted.bytes - this.errorBytes;
    this.error = fitted.value;
    this.errorBytes = fitted.bytes;
    while (this.bytes > this.maxOutputBytes) {
      const last = this.entries.pop();
      if (!last) break;
      this.bytes -= last.bytes + 1;
      this.truncated = true;
      this.full = true;
      const cut = fitBundle(last.bundle, this.room);
      if (cut.value === undefined) continue;
      this.entries.push({ ...last, bundle: cut.value, bytes: cut.bytes, capped: true });
      this.bytes += cut.bytes + 1;
    }
  }

  private applyPendingClear(): void {
    if (this.clearPending) this.clear();
  }

  private clear(): void {
    this.clearPending = false;
    this.entries.length = 0;
    this.bytes = this.errorBytes;
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

/** A message's `data` as a MIME bundle (anything else as an empty one). */
export function asBundle(data: unknown): MimeBundle {
  return data !== null && typeof data === "object" && !Array.isArray(data) ? { ...(data as MimeBundle) } : {};
}

function displayIdOf(content: Record<string, unknown>): string | undefined {
  const transient = content.transient;
  if (transient === null || typeof transient !== "object") return undefined;
  const id = (transient as Record<string, unknown>).display_id;
  return typeof id === "string" ? id : undefined;
}

/** An `error` message's content (or an error reply's) as the RunResult's error, ANSI stripped. */
export function toRunError(content: Record<string, unknown>): RunError {
  const traceback = Array.isArray(content.traceback)
    ? content.traceback.map((line) => stripAnsi(String(line)))
    : [];
  return { ename: String(content.ename ?? "Error"), evalue: String(content.evalue ?? ""), traceback };
}
