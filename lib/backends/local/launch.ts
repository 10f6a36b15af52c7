import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, openSync } from "node:fs";
import { copyFile, mkdir, readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { KernelLimits } from "../../config.ts";
import { BackendUnavailableError } from "../../errors.ts";
import { type ConnectionInfo, ConnectionInfoSchema, hasAllPorts } from "../../jupyter/connection.ts";
import { logger } from "../../logger.ts";
import { signalGroup } from "../process.ts";
import { jailedCommand, type KernelJail, type Sandbox } from "./bwrap.ts";

/*
 * Launching one local kernel process: its connection file, its command line (bare or inside the
 * sandbox), its log, and the wait until it has bound its sockets. The backend decides what a
 * kernel gets; this file only makes the process.
 */

const run = promisify(execFile);

/** How one kernel is to be sandboxed. */
export interface Jail {
  sandbox: Sandbox;
  jail: KernelJail;
  /** The interpreter has `-P` (see {@link spawnKernel}). */
  safePath: boolean;
}

/**
 * Starts ipykernel with `connectionFile` as its own process group (it outlives the request), its
 * output in `kernel.log` beside the connection file. `profileDir` is the profile it starts with.
 */
export function spawnKernel(
  python: string,
  connectionFile: string,
  cwd: string,
  env: Record<string, string>,
  jail: Jail | undefined,
  limits: KernelLimits,
  profileDir?: string,
): ChildProcess {
  // In the sandbox the cwd may hold files an earlier kernel left: `-P` keeps `-m` from importing
  // a planted `ipykernel_launcher.py` from it, and the cwd joins `sys.path` only once the kernel
  // is up, as users expect for importing their own modules.
  const safe = jail?.safePath
    ? { flags: ["-P"], args: ['--IPKernelApp.exec_lines=__import__("sys").path.insert(0, "")'] }
    : { flags: [], args: [] };
  const kernel = [
    python,
    ...safe.flags,
    "-m",
    "ipykernel_launcher",
    "-f",
    connectionFile,
    "--HistoryManager.enabled=False",
    ...(profileDir ? [`--profile-dir=${profileDir}`] : []),
    ...safe.args,
  ];
  const { file, args } = jail
    ? jailedCommand(jail.sandbox, jail.jail, limits, kernel)
    : { file: python, args: kernel.slice(1) };
  // O_NOFOLLOW: the runtime folder is the kernel's to write, so its log may have become a symlink.
  const log = openSync(
    join(dirname(connectionFile), "kernel.log"),
    constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    const child = spawn(file, args, { cwd, env, detached: true, stdio: ["ignore", log, log] });
    child.unref();
    child.on("error", (error) => logger.error("kernel process error", { error }));
    return child;
  } finally {
    closeSync(log);
  }
}

/** A connection file with a fresh random key; ports 0 let the kernel pick free ports (or `ipc` paths). */
export function freshConnection(socketDir?: string): ConnectionInfo {
  return {
    // A sandboxed kernel has no network: its sockets are files in a folder shared with it.
    transport: socketDir ? "ipc" : "tcp",
    ip: socketDir ? join(socketDir, "k") : "127.0.0.1",
    shell_port: 0,
    iopub_port: 0,
    stdin_port: 0,
    control_port: 0,
    hb_port: 0,
    key: randomBytes(32).toString("hex"),
    signature_scheme: "hmac-sha256",
  };
}

/** ipykernel rewrites the connection file once its sockets are bound; wait for that (or its death). */
export async function waitForPorts(
  file: string,
  child: ChildProcess,
  deadline: number,
): Promise<ConnectionInfo> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new BackendUnavailableError(
        `the kernel process exited during start (${child.exitCode ?? child.signalCode})`,
      );
    }
    const info = ConnectionInfoSchema.safeParse(await readJson(file));
    if (info.success && hasAllPorts(info.data)) return info.data;
    await sleep(10);
  }
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null)
    signalGroup(child.pid, "SIGKILL");
  throw new BackendUnavailableError("the kernel did not bind its ports in time");
}

/** Shared font lists being built, by folder: each is built once per process. */
const sharedFontCaches = new Map<string, Promise<void>>();

/**
 * A sandboxed kernel's own matplotlib folder (a shared one would be a channel between kernels),
 * seeded with the font list, which otherwise costs each kernel's first plot a scan of the
 * system's fonts. The shared list in `stateDir` is built once per process by the trusted
 * interpreter, never by a kernel, and awaited, so nothing runs on after the server.
 */
export async function kernelFontCache(python: string, stateDir: string, runtimeDir: string): Promise<string> {
  const shared = join(stateDir, "cache", "matplotlib");
  let building = sharedFontCaches.get(shared);
  if (!building) {
    building = buildFontCache(python, shared);
    sharedFontCaches.set(shared, building);
  }
  await building;
  const own = join(runtimeDir, "matplotlib");
  await mkdir(own, { recursive: true });
  const lists = (await readdir(shared).catch(() => [])).filter((name) => /^fontlist-.*\.json$/.test(name));
  await Promise.all(
    lists.map((name) => copyFile(join(shared, name), join(own, name)).catch(() => undefined)),
  );
  return own;
}

/** Builds matplotlib's font list in `dir` unless it is there; a failure only costs speed. */
async function buildFontCache(python: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).some((name) => name.startsWith("fontlist-"))) return;
  await run(python, ["-c", "import matplotlib.font_manager"], {
    env: { MPLCONFIGDIR: dir, HOME: dir, PATH: "/usr/bin:/bin" },
    timeout: 60_000,
  }).catch((error: Error) => logger.warn("matplotlib's font list was not built", { error }));
}

/** A JSON file's value, or undefined while it is missing or half-written. */
export async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8"));
  } catch {
    return undefined;
  }
}
