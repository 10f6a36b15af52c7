import type * as z from "zod";
import type { OutputEvent } from "../core/run-events.ts";
import type { RunResult } from "../core/run-result.ts";

/** The backends the product can run kernels on. */
export type BackendName = "local" | "gateway" | "cluster";

/**
 * Everything needed to reach a kernel again from a fresh process: plain JSON, stored in DynamoDB
 * and handed back to the same backend, which validates it on the way in.
 */
export type KernelRef = { readonly backend: BackendName } & Record<string, unknown>;

/** What the sandbox asks a backend to start. */
export interface StartSpec {
  /** The caller (owner) the kernel belongs to. */
  owner: string;
  /** The caller's name for the kernel; backends never use it as their own id. */
  kernelId: string;
  /** Working directory asked for; a backend-chosen fresh directory when absent. */
  cwd?: string;
  /** Operator and caller variables, already merged and checked. */
  env: Record<string, string>;
}

/** How one run is bounded. */
export interface RunOptions {
  timeoutMs: number;
  interruptGraceMs: number;
  /** Response bytes all of the run's output may take (see `OutputLimits` in `lib/jupyter/run-collector.ts`). */
  maxOutputBytes: number;
  /** Response bytes one output entry, or the error, may take; at most `maxOutputBytes`. */
  maxOutputEntryBytes: number;
  /**
   * When given, the backend may connect and get the kernel ready meanwhile, but sends the code only
   * once this resolves; if it rejects, the run ends with that error and no code was sent. Lets the
   * service overlap its DynamoDB lease with the connection handshake.
   */
  admitted?: Promise<unknown>;
  /** Told each output as the kernel produces it, within the run's caps (a streamed run). */
  onOutput?: (event: OutputEvent) => void;
}

/**
 * A silent helper request of ours (`silent`, `store_history: false`: the caller's execution count,
 * `_` and history are untouched): `code` runs, then `expression` is evaluated and its JSON value
 * checked with `schema`. Files move in and out of kernels this way, on every backend alike.
 */
export interface HelperRequest<T> {
  code: string;
  expression: string;
  schema: z.ZodType<T>;
  timeoutMs: number;
}

/**
 * The port every backend implements; the sandbox service knows this and nothing of a backend's
 * insides. Errors are the project's own (see `lib/errors.ts`): a dead kernel is `KernelDiedError`,
 * an unreachable peer `BackendUnavailableError`.
 */
export interface Backend<R extends KernelRef = KernelRef> {
  readonly name: BackendName;
  /** Checks a stored ref (it crossed a process boundary and a database). */
  parseRef(value: unknown): R;
  start(spec: StartSpec): Promise<R>;
  run(ref: R, code: string, options: RunOptions): Promise<RunResult>;
  /** Runs a {@link HelperRequest} in the kernel; a raise in it is `KernelCodeError`. */
  helper<T>(ref: R, request: HelperRequest<T>): Promise<T>;
  interrupt(ref: R): Promise<void>;
  isAlive(ref: R): Promise<boolean>;
  /** Idempotent: a kernel that is gone already is success. */
  stop(ref: R): Promise<void>;
  /** Closes what it keeps open between uses (kept connections), when the process is done serving. */
  closeKept?(): void;
  /**
   * Why kernels of different callers would share one host and one OS user here (so one could read
   * another's files), or undefined when each kernel is isolated. Asked once per process.
   */
  sharedHost?(): Promise<string | undefined>;
  /** Set by backends whose kernels can be started ahead of demand and handed to a caller later. */
  readonly pooling?: KernelPooling<R>;
  /**
   * The kernels this backend is running, so the reaper can stop those no record points at (a crash
   * between starting a kernel and recording it). Left out by backends whose peer can list kernels
   * of other deployments too, or culls idle kernels itself.
   */
  readonly inventory?: KernelInventory<R>;
}

/** A backend's own list of its kernels, for finding orphans. */
export interface KernelInventory<R extends KernelRef = KernelRef> {
  /** Every kernel with the epoch ms it was started at. */
  list(): Promise<Array<{ ref: R; startedAt: number }>>;
  /** A stable identity of a kernel, equal for a ref and its stored copy. */
  keyOf(ref: R): string;
}

/**
 * How a backend's kernels are pooled: started with the operator's env only, for no caller, then
 * adopted by one caller's start. Adopting is silent (no execution count, no history, no names in
 * the namespace) and leaves the kernel as a cold start with the same spec would be.
 */
export interface KernelPooling<R extends KernelRef = KernelRef> {
  /** Which pool this backend's kernels belong to: what they are made from (kernelspec, image, interpreter). */
  readonly key: string;
  /** Why a pooled kernel cannot become this start's (something only a process start can set), or undefined. */
  refusal(spec: StartSpec): string | undefined;
  /** Gives a pooled kernel the start's `cwd`, `env` and owner; returns the ref as it is now. */
  adopt(ref: R, spec: StartSpec): Promise<R>;
}
