import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { deferred } from "../async.ts";
import type { OutputEvent } from "../core/run-events.ts";
import { MimeBundleSchema, type RunResult } from "../core/run-result.ts";
import {
  BackendError,
  BackendUnavailableError,
  KernelCodeError,
  KernelDiedError,
  KernelStuckError,
  PyboxError,
} from "../errors.ts";
import { artifactsOf } from "./artifacts.ts";
import { createMessage, executeContent, type JupyterMessage } from "./messages.ts";
import { asBundle, RunCollector, stripAnsi, toRunError } from "./run-collector.ts";
import type { ExecuteRequestContent, KernelTransport } from "./transport.ts";

/*
 * The rules of a run, written once for every transport (see `transport.ts`): a request is done
 * when both its `execute_reply` and its `status: idle` have arrived, in either order; output is
 * folded by the RunCollector within its caps; at the deadline the kernel is interrupted and gets
 * a grace period to answer, after which a kernel that never replied is stuck; a kernel that dies,
 * or that the caller says is gone, ends the run at once.
 */

/** How one execution is bounded and watched. */
export interface ExecutionOptions {
  /** The code's own budget; at the deadline the kernel is interrupted. */
  timeoutMs: number;
  /** How long an interrupted kernel gets to come back to idle before we give up waiting. */
  interruptGraceMs: number;
  /** Cap on the displayed output kept in the result, in response bytes. */
  maxOutputBytes: number;
  /** Cap on one output entry, and on the error, in response bytes. */
  maxOutputEntryBytes: number;
  /** Aborted by the caller when it learns the kernel is gone (e.g. its process exited). */
  signal?: AbortSignal;
  /** The code is sent only once this resolves (see `RunOptions.admitted`); getting ready need not wait. */
  admitted?: Promise<unknown>;
  /** Told each output as it arrives, within the same caps as the result (see {@link outputObserver}). */
  onOutput?: (event: OutputEvent) => void;
}

/** A run of the caller's code. */
export interface RunCodeOptions extends ExecutionOptions {
  /** Python expressions of ours evaluated after the code, in the same request (no extra round trip). */
  userExpressions?: Record<string, string>;
}

/** The value of one user expression, as the kernel's reply carries it. */
export const ExpressionValueSchema = z.discriminatedUnion("status", [
  z.object({ status: z.literal("ok"), data: MimeBundleSchema }),
  z.object({
    status: z.literal("error"),
    ename: z.string(),
    evalue: z.string(),
    traceback: z.array(z.string()).catch([]),
  }),
]);

/** One user expression's value or the exception it raised, checked where it entered. */
export type ExpressionValue = z.infer<typeof ExpressionValueSchema>;

/** What a run of the caller's code gave. */
export interface RunOutcome {
  result: RunResult;
  /** The user expressions' values, by name; empty when the code raised (the kernel skips them then). */
  expressions: Record<string, ExpressionValue>;
}

/** A helper request of ours: bounded like a run, its output small. */
export interface SilentOptions {
  timeoutMs: number;
  /** Default {@link HELPER_GRACE_MS}. */
  interruptGraceMs?: number;
  /** Cap on what the helper may print, in bytes; default {@link HELPER_OUTPUT_BYTES}. */
  maxOutputBytes?: number;
  signal?: AbortSignal;
  userExpressions?: Record<string, string>;
}

/** What a helper request gave: what it printed to stdout, and its expressions' values. */
export interface SilentOutcome {
  stdout: string;
  expressions: Record<string, ExpressionValue>;
}

/** How long an interrupt request may wait for its acknowledgement before the grace period runs on. */
const INTERRUPT_ACK_MS = 2_000;
/** Grace of an interrupted helper request unless the caller says otherwise. */
const HELPER_GRACE_MS = 2_000;
/** What a helper request may print unless the caller says otherwise. */
const HELPER_OUTPUT_BYTES = 1024 * 1024;

/**
 * Runs the caller's code and collects what it displayed. At the deadline the kernel is interrupted
 * and the result says `timeout`; if the kernel has not replied within the grace period, the run
 * ends with {@link KernelStuckError} carrying what it displayed. A death the transport finds, or
 * the caller signals, ends the run at once with the transport's error. The files the run made
 * come in its reply (see `artifacts.ts`), also when it raised or timed out.
 */
export async function runCode(
  transport: KernelTransport,
  code: string,
  options: RunCodeOptions,
): Promise<RunOutcome> {
  const content = { ...executeContent(code), user_expressions: options.userExpressions ?? {} };
  const observe = options.onOutput && outputObserver(options.onOutput, options);
  const { result, reply } = await exchange(transport, content, options, observe);
  return { result: { ...result, ...artifactsOf(reply) }, expressions: expressionsOf(reply) };
}

/**
 * A helper request whose kernel never came back from the interrupt is the backend being
 * unavailable for our own work (503, retry), not a caller's stuck code (409).
 */
async function exchangeHelper(...args: Parameters<typeof exchange>): ReturnType<typeof exchange> {
  try {
    return await exchange(...args);
  } catch (error) {
    if (error instanceof KernelStuckError) {
      throw new BackendUnavailableError("the kernel did not come back from interrupting a helper request", {
        cause: error,
      });
    }
    throw error;
  }
}

/**
 * Runs helper code of ours silently: it bumps no `execution_count`, leaves `_`/`Out` and the
 * history alone, and shows nothing of its own. Resolves with what it printed to stdout; raises
 * {@link KernelCodeError} if the code raised, {@link BackendUnavailableError} if it did not finish
 * in time (it is interrupted, so it does not hold the kernel).
 */
export async function runSilently(
  transport: KernelTransport,
  code: string,
  options: SilentOptions,
): Promise<SilentOutcome> {
  const content: ExecuteRequestContent = {
    ...executeContent(code),
    silent: true,
    store_history: false,
    user_expressions: options.userExpressions ?? {},
  };
  const cap = options.maxOutputBytes ?? HELPER_OUTPUT_BYTES;
  let stdout = "";
  let overflowed = false;
  const { result, reply } = await exchangeHelper(
    transport,
    content,
    {
      timeoutMs: options.timeoutMs,
      interruptGraceMs: options.interruptGraceMs ?? HELPER_GRACE_MS,
      maxOutputBytes: cap,
      maxOutputEntryBytes: cap,
      ...(options.signal ? { signal: options.signal } : {}),
    },
    (message) => {
      if (message.header.msg_type !== "stream" || message.content.name !== "stdout") return;
      const text = String(message.content.text ?? "");
      if (Buffer.byteLength(stdout) + Buffer.byteLength(text) > cap) overflowed = true;
      else stdout += text;
    },
  );
  if (result.status === "timeout") {
    throw new BackendUnavailableError(
      `the kernel did not finish a helper request within ${options.timeoutMs} ms`,
    );
  }
  if (result.error) {
    throw new KernelCodeError(`helper code raised ${result.error.ename} in the kernel`, result.error);
  }
  if (overflowed) throw new BackendError(`a helper request printed more than ${cap} bytes`);
  return { stdout, expressions: expressionsOf(reply) };
}

/** Options of {@link evaluate}. */
export interface EvaluateOptions extends Omit<SilentOptions, "userExpressions"> {
  /** Statements run first, in the same request. */
  code?: string;
}

/**
 * The value of a Python expression of ours, evaluated silently (as {@link runSilently}) and
 * carried as JSON, checked by `schema`. It travels in the reply (a user expression), not on
 * stdout, so nothing another thread prints meanwhile can mix into it.
 */
export async function evaluate<T>(
  transport: KernelTransport,
  expression: string,
  schema: z.ZodType<T>,
  options: EvaluateOptions,
): Promise<T> {
  // base64 of the JSON: its repr is the text between two quotes, with nothing to unescape.
  const carried = `__import__("base64").b64encode(__import__("json").dumps(${expression}).encode()).decode()`;
  const { code = "", ...silent } = options;
  const { expressions } = await runSilently(transport, code, {
    ...silent,
    userExpressions: { value: carried },
  });
  const value = expressions.value;
  if (value?.status === "error") {
    const { ename, evalue } = value;
    const traceback = value.traceback.map(stripAnsi);
    throw new KernelCodeError(`a helper expression raised ${ename} in the kernel`, {
      ename,
      evalue,
      traceback,
    });
  }
  const repr = value?.data["text/plain"];
  const encoded = typeof repr === "string" ? /^'([A-Za-z0-9+/=]*)'$/.exec(repr)?.[1] : undefined;
  let parsed: unknown;
  try {
    if (encoded === undefined) throw new Error("not a base64 repr");
    parsed = JSON.parse(Buffer.from(encoded, "base64").toString("utf8"));
  } catch (cause) {
    throw new BackendError("the kernel answered a helper expression with no readable value", { cause });
  }
  const checked = schema.safeParse(parsed);
  if (!checked.success)
    throw new BackendError("the kernel answered a helper expression with an unexpected value");
  return checked.data;
}

/** What {@link exchange} hands back: the result so far and the reply, if one came. */
interface Exchange {
  result: RunResult;
  reply: JupyterMessage | undefined;
}

/**
 * One `execute_request` under the rules of a run (see the top of this file). `observe` sees each
 * iopub message of the request before the collector does.
 */
async function exchange(
  transport: KernelTransport,
  content: ExecuteRequestContent,
  options: ExecutionOptions,
  observe?: (message: JupyterMessage) => void,
): Promise<Exchange> {
  const stop = new AbortController();
  const death = Promise.race([transport.death(stop.signal), abandoned(options.signal, stop.signal)]);
  death.catch(() => undefined);
  try {
    // A refusal (the lease was not ours) ends the run even while the transport gets ready.
    const refused = options.admitted?.then(() => new Promise<never>(() => undefined));
    refused?.catch(() => undefined);
    const stops = refused ? [death, refused] : [death];
    await Promise.race([transport.ready(stop.signal), ...stops]);
    if (options.admitted) await Promise.race([options.admitted, ...stops]);

    const request = createMessage("execute_request", content, transport.session);
    const collector = new RunCollector({
      maxOutputBytes: options.maxOutputBytes,
      maxEntryBytes: options.maxOutputEntryBytes,
    });
    const finished = deferred<void>();
    let reply: JupyterMessage | undefined;
    const unlisten = transport.listen(request.header.msg_id, (message, channel) => {
      if (channel === "iopub") {
        observe?.(message);
        collector.onIopub(message);
      } else {
        reply = message;
        collector.onReply(message);
      }
      if (collector.done) finished.resolve();
    });
    const started = performance.now();
    try {
      await transport.send(request);
      const deadline = sleep(options.timeoutMs, "timeout" as const, { signal: stop.signal }).catch(
        () => "ended" as const,
      );
      const outcome = await Promise.race([finished.promise.then(() => "done" as const), deadline, death]);
      if (outcome === "done") return { result: collector.result(elapsed(started)), reply };
      await transport.interrupt(Math.min(options.interruptGraceMs, INTERRUPT_ACK_MS)).catch(() => undefined);
      const grace = sleep(options.interruptGraceMs, undefined, { signal: stop.signal }).catch(
        () => undefined,
      );
      await Promise.race([finished.promise, grace, death]);
      const result = collector.result(elapsed(started), options.timeoutMs);
      // A reply means the code ended; only a missing `idle` (a lost iopub message) is not stuckness.
      if (!collector.done && !collector.replied) {
        throw new KernelStuckError("the kernel did not come back from an interrupt", result);
      }
      return { result, reply };
    } finally {
      unlisten();
    }
  } finally {
    stop.abort();
  }
}

/** Rejects once the caller's `signal` says the kernel is gone; stops listening when `stop` aborts. */
function abandoned(signal: AbortSignal | undefined, stop: AbortSignal): Promise<never> {
  if (!signal) return new Promise<never>(() => undefined);
  return new Promise<never>((_, reject) => {
    const gone = () =>
      reject(signal.reason instanceof PyboxError ? signal.reason : new KernelDiedError("the kernel is gone"));
    if (signal.aborted) return gone();
    signal.addEventListener("abort", gone, { once: true });
    stop.addEventListener("abort", () => signal.removeEventListener("abort", gone), { once: true });
  });
}

/** The reply's user expressions, each checked; one the kernel sent malformed is left out. */
function expressionsOf(reply: JupyterMessage | undefined): Record<string, ExpressionValue> {
  const raw = reply?.content.user_expressions;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return {};
  const values: Record<string, ExpressionValue> = {};
  for (const [name, value] of Object.entries(raw)) {
    const parsed = ExpressionValueSchema.safeParse(value);
    if (parsed.success) values[name] = parsed.data;
  }
  return values;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

/**
 * Turns a run's iopub messages into output events as they arrive. The caps are the result's: a
 * stream chunk or bundle over the entry cap is cut (its `text/plain` kept) or left out, and once
 * the run's total is spent no more output is told (the final result says `truncated`). An error is
 * always told.
 */
export function outputObserver(
  tell: (event: OutputEvent) => void,
  limits: Pick<ExecutionOptions, "maxOutputBytes" | "maxOutputEntryBytes">,
): (message: JupyterMessage) => void {
  let spent = 0;
  const fits = (bytes: number) =>
    bytes <= limits.maxOutputEntryBytes && spent + bytes <= limits.maxOutputBytes;
  return (message) => {
    const content = message.content;
    switch (message.header.msg_type) {
      case "stream": {
        const room = Math.min(limits.maxOutputEntryBytes, limits.maxOutputBytes - spent);
        const text = cutToBytes(stripAnsi(String(content.text ?? "")), Math.max(0, room));
        if (text === "") return;
        spent += Buffer.byteLength(text);
        tell({ event: "stream", name: String(content.name ?? "stdout"), text });
        return;
      }
      case "display_data":
      case "execute_result": {
        const event = message.header.msg_type === "display_data" ? "display" : "result";
        let data = asBundle(content.data);
        let bytes = Buffer.byteLength(JSON.stringify(data));
        if (!fits(bytes) && typeof data["text/plain"] === "string") {
          data = { "text/plain": data["text/plain"] };
          bytes = Buffer.byteLength(JSON.stringify(data));
        }
        if (!fits(bytes)) return;
        spent += bytes;
        tell({ event, data });
        return;
      }
      case "error":
        tell({ event: "error", error: toRunError(content) });
        return;
      default:
        return;
    }
  };
}

/** The longest start of `text` within `bytes` UTF-8 bytes, never splitting a character. */
function cutToBytes(text: string, bytes: number): string {
  if (Buffer.byteLength(text) <= bytes) return text;
  let end = Math.min(text.length, bytes);
  while (end > 0 && Buffer.byteLength(text.slice(0, end)) > bytes) end--;
  return text.slice(0, end);
}
