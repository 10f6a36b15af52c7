import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** A server process of the rig, with its log file; stopped by its PID by whoever started it. */
export interface Daemon {
  name: string;
  pid: number;
  log: string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** The end of its log, for an error message. */
  tail(): Promise<string>;
}

/** Starts `command` with its output in `log`, and waits until `ready()` says so (or it exits, which fails). */
export async function startDaemon(options: {
  name: string;
  command: string;
  args: string[];
  log: string;
  env?: NodeJS.ProcessEnv;
  ready: () => Promise<boolean>;
  timeoutMs?: number;
}): Promise<Daemon> {
  const out = createWriteStream(options.log, { flags: "a" });
  await once(out, "open");
  // Dies with this process whatever happens to it, so a crashed test run leaves no server behind.
  const child: ChildProcess = spawn(
    "setpriv",
    ["--pdeathsig", "SIGKILL", "--", options.command, ...options.args],
    {
      env: options.env ?? process.env,
      stdio: ["ignore", out, out],
    },
  );
  const exited = once(child, "exit");
  const daemon: Daemon = {
    name: options.name,
    pid: child.pid ?? -1,
    log: options.log,
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const killed = sleep(graceMs).then(() => child.kill("SIGKILL"));
      await Promise.race([exited, killed]);
      await exited;
      out.end();
    },
    async tail() {
      return (await readFile(options.log, "utf8").catch(() => "")).slice(-3_000);
    },
  };
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `${options.name} exited while starting (${child.exitCode ?? child.signalCode}):\n${await daemon.tail()}`,
      );
    if (await options.ready().catch(() => false)) return daemon;
    await sleep(200);
  }
  await daemon.stop();
  throw new Error(
    `${options.name} was not ready within ${options.timeoutMs ?? 60_000} ms:\n${await daemon.tail()}`,
  );
}
