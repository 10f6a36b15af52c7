import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { LocalBackend } from "../../lib/backends/local.ts";

/**
 * The host pid of a local kernel, found from inside it: a sandboxed kernel sees its own pid in its
 * PID namespace (always 2), so tests ask it for its runtime folder and read the ref kept there.
 * For a sandboxed kernel this is bwrap's pid; killing it ends the kernel with it, as a crash would.
 *
 * `evaluate` runs one expression in the kernel and gives back its `repr`.
 */
export async function localKernelPid(evaluate: (code: string) => Promise<string>): Promise<number> {
  const repr = await evaluate("__import__('os').environ['IPYTHONDIR']");
  const ipythonDir = repr.replace(/^'|'$/g, "");
  const ref = new LocalBackend({ python: "unused", stateDir: "unused", startTimeoutMs: 1_000 }).parseRef(
    JSON.parse(await readFile(join(dirname(ipythonDir), "ref.json"), "utf8")),
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
