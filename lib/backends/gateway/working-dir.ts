import * as z from "zod";
import { KernelCodeError, ValidationError } from "../../errors.ts";
import { evaluate, runSilently } from "../../jupyter/execution.ts";
import type { KernelTransport } from "../../jupyter/transport.ts";

/*
 * A gateway kernel's working directory. Enterprise Gateway honours `KERNEL_WORKING_DIR` only for
 * container process proxies with `EG_MIRROR_WORKING_DIRS`; a stock gateway starts local kernels
 * in its own directory. So the kernel is asked where it is, and moved, with silent requests that
 * neither count as runs nor touch `_`.
 */

/** How {@link enterWorkingDir} goes about it. */
export interface WorkingDirOptions {
  /** Statements of ours run first, in the same request as the check (no extra round trip). */
  before?: string;
  /** Make a missing directory (`PYBOX_GATEWAY_CREATE_CWD`) rather than refuse it. */
  create: boolean;
  timeoutMs: number;
}

/**
 * Puts the kernel in `cwd` unless it is there already. A directory that does not exist on the
 * kernel's host (and may not be made), or is no directory, is the caller's {@link ValidationError}.
 */
export async function enterWorkingDir(
  transport: KernelTransport,
  cwd: string,
  options: WorkingDirOptions,
): Promise<void> {
  const now = await evaluate(transport, `__import__("os").getcwd()`, z.string(), {
    ...(options.before === undefined ? {} : { code: options.before }),
    timeoutMs: options.timeoutMs,
  });
  if (now === cwd) return;
  // A JSON string is a valid Python string literal (JSON.stringify writes no `\/`).
  const path = JSON.stringify(cwd);
  const code = [
    ...(options.create ? [`__import__("os").makedirs(${path}, exist_ok=True)`] : []),
    `__import__("os").chdir(${path})`,
  ].join("\n");
  try {
    await runSilently(transport, code, { timeoutMs: options.timeoutMs });
  } catch (error) {
    if (error instanceof KernelCodeError) throw refusal(cwd, error.error.ename) ?? error;
    throw error;
  }
}

/** What a failed `chdir` (or `makedirs`) means for the caller; undefined when it is not theirs to fix. */
function refusal(cwd: string, ename: string): ValidationError | undefined {
  if (ename === "FileNotFoundError") {
    return new ValidationError(`cwd '${cwd}' does not exist on the gateway's kernel host`);
  }
  if (ename === "NotADirectoryError" || ename === "FileExistsError") {
    return new ValidationError(`cwd '${cwd}' is not a directory on the gateway's kernel host`);
  }
  if (ename === "PermissionError") {
    return new ValidationError(`cwd '${cwd}' may not be entered on the gateway's kernel host`);
  }
  return undefined;
}
