import { LocalBackend, type LocalKernelRef } from "../../lib/backends/local/local.ts";
import { isRunning } from "../../lib/backends/process.ts";

/**
 * The local backend's kernel processes under a state folder that are still running, found the way
 * the reaper finds them (each kernel's own ref file), whatever the store says about them.
 */
export async function runningLocalKernels(stateDir: string): Promise<LocalKernelRef[]> {
  const inventory = new LocalBackend({ python: "unused", stateDir, startTimeoutMs: 1_000 }).inventory;
  const running: LocalKernelRef[] = [];
  for (const { ref } of await inventory.list()) if (await isRunning(ref)) running.push(ref);
  return running;
}

/** Waits until `check` holds, polling; false if it never did within `ms`. */
export async function waitFor(check: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}
