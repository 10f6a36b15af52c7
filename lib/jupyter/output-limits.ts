import type { MimeBundle, RunError } from "../core/run-result.ts";

/**
 * How a run's output is measured and cut so its RunResult fits a Lambda response.
 *
 * Sizes are *response bytes*: what a value costs in the Lambda invocation response. The RunResult
 * is JSON, and that JSON is itself the string `body` of the API Gateway response, so every value is
 * JSON-escaped twice: a letter costs 1 byte, `é` 2, a newline 3 (`\\n`), a quote or a backslash 4,
 * another control character 7 (`\\u0001`). Counting raw UTF-8 would let quote- or control-heavy
 * output (`print("\x01" * 3_000_000)`) take several times its cap and break Lambda's 6 MB limit.
 */

/** The MIME type that is plain text: the one value that can be cut and still mean something. */
export const TEXT_PLAIN = "text/plain";

/** Room for an exception's name; real ones are short, so this only stops a pathological one. */
const NAME_BYTES = 256;

/** Share of an error's room its message may take when both it and the traceback are too long. */
const EVALUE_SHARE = 4;

/** Share of a traceback's room one line may take, so that both ends of a long traceback fit. */
const LINE_SHARE = 4;

/** What was kept of a value cut to a budget. */
export interface Fitted<T> {
  /** What is left; `undefined` when nothing fits. */
  value: T | undefined;
  /** Its response bytes (0 when nothing is left). */
  bytes: number;
  /** Whether anything was cut or dropped. */
  cut: boolean;
}

/** Response bytes of a JSON value, quotes and brackets included. */
export function responseBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(JSON.stringify(value)), "utf8") - 2;
}

/** Response bytes of text inside a JSON string, without the quotes around it. */
export function textBytes(text: string): number {
  return responseBytes(text) - 4;
}

/** Response bytes the quotes around a string take. */
const QUOTES_BYTES = textBytes('""');

/**
 * The longest start of `text` whose {@link textBytes} are at most `maxBytes`. Cuts between whole
 * characters: never inside a surrogate pair, so never inside a UTF-8 sequence either.
 */
export function cutText(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  while (end < text.length) {
    const code = text.charCodeAt(end);
    const pair = isHighSurrogate(code) && isLowSurrogate(text.charCodeAt(end + 1));
    const cost = pair ? 4 : charBytes(code);
    if (bytes + cost > maxBytes) break;
    bytes += cost;
    end += pair ? 2 : 1;
  }
  return end === text.length ? text : text.slice(0, end);
}

/** JSON's two-character escapes: `\b \t \n \f \r`. */
const SHORT_ESCAPES = new Set([0x08, 0x09, 0x0a, 0x0c, 0x0d]);

/** Response bytes of one UTF-16 code unit that is not half of a surrogate pair. */
function charBytes(code: number): number {
  if (code === 0x22 || code === 0x5c) return 4; // " → \" → \\\"
  if (code < 0x20) return SHORT_ESCAPES.has(code) ? 3 : 7; // \n → \\n, \u0001 → \\u0001
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  if (code >= 0xd800 && code <= 0xdfff) return 7; // a lone surrogate → \\udXXX
  return 3;
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/**
 * Fits one displayed bundle into `maxBytes`. An image, HTML, JSON or any other rich value cannot be
 * cut in half and still be read, so such values are dropped whole, largest first; only `text/plain`
 * is cut (on a character boundary). A figure too large to keep thus still says `<Figure size …>`.
 */
export function fitBundle(bundle: MimeBundle, maxBytes: number): Fitted<MimeBundle> {
  const parts = new Map(Object.entries(bundle).map(([type, value]) => [type, partBytes(type, value)]));
  let bytes = bundleBytes(parts.values());
  if (bytes <= maxBytes) return { value: bundle, bytes, cut: false };
  const kept: MimeBundle = { ...bundle };
  const rich = [...parts.keys()].filter((type) => type !== TEXT_PLAIN);
  rich.sort((a, b) => (parts.get(b) ?? 0) - (parts.get(a) ?? 0));
  for (const type of rich) {
    if (bytes <= maxBytes) break;
    delete kept[type];
    parts.delete(type);
    bytes = bundleBytes(parts.values());
  }
  if (bytes > maxBytes) {
    const text = kept[TEXT_PLAIN];
    parts.delete(TEXT_PLAIN);
    delete kept[TEXT_PLAIN];
    const room = maxBytes - bundleBytes([...parts.values(), partBytes(TEXT_PLAIN, "")]);
    const cut = typeof text === "string" && room >= 0 ? cutText(text, room) : "";
    if (cut !== "") {
      kept[TEXT_PLAIN] = cut;
      parts.set(TEXT_PLAIN, partBytes(TEXT_PLAIN, cut));
    }
    bytes = bundleBytes(parts.values());
  }
  return parts.size === 0 ? { value: undefined, bytes: 0, cut: true } : { value: kept, bytes, cut: true };
}

/** Response bytes of one `"type":value` member of a bundle. */
function partBytes(type: string, value: unknown): number {
  return responseBytes(type) + 1 + responseBytes(value);
}

/** Response bytes of a bundle made of members of these sizes: braces, members, commas. */
function bundleBytes(parts: Iterable<number>): number {
  let bytes = 2;
  let count = 0;
  for (const part of parts) {
    bytes += part;
    count += 1;
  }
  return bytes + Math.max(0, count - 1);
}

/**
 * Fits an error into `maxBytes`, never dropping it: it is what an agent needs to fix its code. The
 * name is kept (up to a sane length), the message is cut, and a long traceback keeps both ends,
 * where the call that failed and the line that raised are, with a line saying how much is left out.
 */
export function fitError(error: RunError, maxBytes: number): Fitted<RunError> & { value: RunError } {
  const bytes = responseBytes(error);
  if (bytes <= maxBytes) return { value: error, bytes, cut: false };
  const ename = cutText(error.ename, NAME_BYTES);
  const room = maxBytes - responseBytes({ ename, evalue: "", traceback: [] });
  const tracebackBytes = responseBytes(error.traceback) - responseBytes([]);
  const evalueRoom = Math.max(Math.floor(room / EVALUE_SHARE), room - tracebackBytes);
  const evalue = cutText(error.evalue, Math.max(0, evalueRoom));
  const tracebackRoom = maxBytes - responseBytes({ ename, evalue, traceback: [] });
  const traceback = fitTraceback(error.traceback, tracebackRoom);
  const value = { ename, evalue, traceback };
  return { value, bytes: responseBytes(value), cut: true };
}

/**
 * Keeps lines of a traceback within `maxBytes` (of list members and their commas): alternately the
 * last and the first ones left, each cut to a share of the room, so both ends survive; the lines in
 * between give way to one line that says how many were left out.
 */
export function fitTraceback(lines: readonly string[], maxBytes: number): string[] {
  const all = lines.reduce((sum, line) => sum + responseBytes(line) + 1, 0) - 1;
  if (all <= maxBytes) return [...lines];
  const room = maxBytes - (responseBytes(omittedLine(lines.length, lines.length)) + 1);
  if (room < 0) return [];
  const lineRoom = Math.max(0, Math.floor(room / LINE_SHARE) - QUOTES_BYTES);
  const head: string[] = [];
  const tail: string[] = [];
  let used = 0;
  let first = 0;
  let last = lines.length - 1;
  for (let fromEnd = true; first <= last; fromEnd = !fromEnd) {
    const line = cutText(lines[fromEnd ? last : first] ?? "", lineRoom);
    const cost = responseBytes(line) + 1;
    if (used + cost > room) break;
    used += cost;
    if (fromEnd) {
      tail.push(line);
      last -= 1;
    } else {
      head.push(line);
      first += 1;
    }
  }
  tail.reverse();
  const omitted = last - first + 1;
  return omitted > 0 ? [...head, omittedLine(omitted, lines.length), ...tail] : [...head, ...tail];
}

/** The line that stands in for the traceback lines left out. */
function omittedLine(omitted: number, total: number): string {
  return `[... ${omitted} of ${total} traceback entries left out: the output cap was reached ...]`;
}
