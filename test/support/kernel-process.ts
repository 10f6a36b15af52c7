import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { LocalBackend, refFile } from "../../lib/backends/local/local.ts";

/**
 * The host pid of a local kernel, found from inside it: a sandboxed kernel sees its own pid in its
 * PID namespace (always 2), so tests ask it for its runtime folder and read the ref kept for it.
 * For a sandboxed kernel this is bwrap's pid; killing it ends the kernel with it, as a crash would.
 *
 * `evaluate` runs one expression in the kernel and gives back its `repr`.
 */
export async function localKernelPid(evaluate: (code: string) => Promise<string>): Promise<number> {
  const repr = await evaluate("__import__('os').environ['IPYTHONDIR']");
  // IPYTHONDIR is <stateDir>/kernels/<id>/ipython; the ref is kept at <stateDir>/refs/<id>.json.
  const runtimeDir = dirname(repr.replace(/^'|'$/g, ""));
  const stateDir = dirname(dirname(runtimeDir));
  const ref = new LocalBackend({ python: "unused", stateDir, startTimeoutMs: 1_000 }).parseRef(
    JSON.parse(await readFile(refFile(stateDir, basename(runtimeDir)), "utf8")),
  );
  return ref.pid;
}

/** True while a process with this pid exists (a zombie counts). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
