import { readFile } from "node:fs/promises";
import { KernelDiedError } from "../errors.ts";

/**
 * Identity of a local kernel process: its pid plus the kernel's start time, so a recycled pid
 * that now belongs to someone else is never mistaken for our kernel (or killed).
 */
export interface ProcessIdentity {
  pid: number;
  /** `starttime` from /proc/<pid>/stat, in clock ticks since boot; null where procfs is absent. */
  startTime: number | null;
}

/** Reads a live process's identity; undefined when it is gone or a zombie. */
export async function readProcess(pid: number): Promise<ProcessIdentity | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT") || isErrno(error, "ESRCH")) return undefined;
    return signalZero(pid) ? { pid, startTime: null } : undefined;
  }
  // Fields after the command name, which is in parentheses and may itself contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  if (state === "Z" || state === "X" || state === "x") return undefined;
  return { pid, startTime: Number(fields[19]) };
}

/** True when the process that was started as `identity` still runs. */
export async function isRunning(identity: ProcessIdentity): Promise<boolean> {
  const now = await readProcess(identity.pid);
  if (!now) return false;
  return identity.startTime === null || now.startTime === null || now.startTime === identity.startTime;
}

/**
 * Sends a signal to the kernel's whole process group (the kernel leads its own), ignoring "gone".
 * Only a group is signalled: a group that is gone means the pid may already be someone else's.
 */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

/** Whether a process of this pid exists (signal 0), for callers that hold no identity but a pid. */
export function signalZero(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Does `use` with a signal that aborts with {@link KernelDiedError} once the process is gone (looked
 * at every `pollMs`), so a request to a kernel that died ends at once rather than at its timeout.
 */
export async function whileRunning<T>(
  identity: ProcessIdentity,
  pollMs: number,
  use: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const death = new AbortController();
  const watch = setInterval(
    () =>
      void isRunning(identity).then((alive) => {
        if (!alive) death.abort(new KernelDiedError("the kernel process has exited"));
      }),
    pollMs,
  );
  try {
    return await use(death.signal);
  } finally {
    clearInterval(watch);
  }
}
