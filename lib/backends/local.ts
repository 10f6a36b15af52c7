import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, constants, openSync } from "node:fs";
import { access, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { BackendUnavailableError, ConfigError, KernelDiedError, ValidationError } from "../errors.ts";
import { KernelClient } from "../jupyter/client.ts";
import { type ConnectionInfo, ConnectionInfoSchema, hasAllPorts } from "../jupyter/connection.ts";
import type { RunResult } from "../jupyter/run-result.ts";
import { logger } from "../logger.ts";
import type { Backend, KernelInventory, RunOptions, StartSpec } from "./port.ts";
import { isRunning, readProcess, signalGroup } from "./process.ts";

const LocalRefSchema = z.object({
  backend: z.literal("local"),
  id: z.uuid(),
  pid: z.number().int().positive(),
  startTime: z.number().nullable(),
  connection: ConnectionInfoSchema,
  runtimeDir: z.string().min(1),
  workDir: z.string().min(1),
  ownsWorkDir: z.boolean(),
});

/** Where a local kernel lives: its process, its sockets and its folders. */
export type LocalKernelRef = z.infer<typeof LocalRefSchema>;

/** Settings of the local backend (from `Config.local` and the run limits). */
export interface LocalBackendOptions {
  /** Interpreter of the project-local environment that has ipykernel. */
  python: string;
  /** Parent of every kernel's runtime folder (connection file, log, default working dir). */
  stateDir: string;
  startTimeoutMs: number;
}

/** mkdir failures that mean the asked-for directory can't exist, as opposed to a broken host. */
const UNUSABLE_DIR = new Set(["ENAMETOOLONG", "ENOTDIR", "EEXIST", "EACCES", "EROFS", "EPERM", "ELOOP"]);

/** The kernel's own ref, beside its connection file (see `inventory`). */
const REF_FILE = "ref.json";

const PROCESS_POLL_MS = 200;
const EXIT_GRACE_MS = 500;
const PING_ATTEMPTS = 3;

/**
 * Kernels as processes on this machine, for development. Each kernel is its own process group,
 * outliving the request that started it; everything needed to reach it again is in the ref.
 * Its environment is built from scratch, so nothing of the host's (credentials, tokens) leaks in.
 */
export class LocalBackend implements Backend<LocalKernelRef> {
  readonly name = "local";

  constructor(private readonly options: LocalBackendOptions) {}

  /** Each kernel's ref is also kept in its runtime folder, so kernels can be found without records. */
  readonly inventory: KernelInventory<LocalKernelRef> = {
    list: async () => {
      const root = join(this.options.stateDir, "kernels");
      const names = await readdir(root).catch(() => []);
      const kernels: Array<{ ref: LocalKernelRef; startedAt: number }> = [];
      for (const name of names) {
        const file = join(root, name, REF_FILE);
        const parsed = LocalRefSchema.safeParse(await readJson(file));
        if (!parsed.success) continue;
        const info = await stat(file).catch(() => undefined);
        if (info) kernels.push({ ref: parsed.data, startedAt: info.mtimeMs });
      }
      return kernels;
    },
    keyOf: (ref) => ref.id,
  };

  parseRef(value: unknown): LocalKernelRef {
    return LocalRefSchema.parse(value);
  }

  async start(spec: StartSpec): Promise<LocalKernelRef> {
    const { python, stateDir, startTimeoutMs } = this.options;
    await access(python, constants.X_OK).catch((cause) => {
      throw new ConfigError(`the kernel interpreter ${python} is missing; run: npm run setup:python`, {
        cause,
      });
    });
    const id = randomUUID();
    const runtimeDir = join(stateDir, "kernels", id);
    const workDir = spec.cwd ?? join(runtimeDir, "work");
    await mkdir(workDir, { recursive: true }).catch((cause: NodeJS.ErrnoException) => {
      // A caller's cwd that cannot be a directory is the caller's mistake, not a server fault.
      if (spec.cwd !== undefined && UNUSABLE_DIR.has(cause.code ?? "")) {
        throw new ValidationError(`cwd '${spec.cwd}' cannot be used as a directory (${cause.code})`);
      }
      throw cause;
    });
    await mkdir(join(runtimeDir, "ipython"), { recursive: true });
    const connectionFile = join(runtimeDir, "connection.json");
    await writeFile(connectionFile, JSON.stringify(freshConnection()), { mode: 0o600 });

    const deadline = Date.now() + startTimeoutMs;
    const child = this.spawnKernel(connectionFile, workDir, {
      ...spec.env,
      PATH: `${dirname(python)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: workDir,
      LANG: spec.env.LANG ?? "C.UTF-8",
      IPYTHONDIR: join(runtimeDir, "ipython"),
      MPLCONFIGDIR: join(stateDir, "cache", "matplotlib"),
    });
    const pid = child.pid;
    if (pid === undefined) throw new BackendUnavailableError("the kernel process could not be spawned");
    const identity = (await readProcess(pid)) ?? { pid, startTime: null };
    const ref: LocalKernelRef = {
      backend: "local",
      id,
      pid,
      startTime: identity.startTime,
      connection: await waitForPorts(connectionFile, child, deadline),
      runtimeDir,
      workDir,
      ownsWorkDir: spec.cwd === undefined,
    };
    const client = new KernelClient(ref.connection, {
      handshakeTimeoutMs: Math.max(1, deadline - Date.now()),
    });
    try {
      await client.handshake();
    } catch (error) {
      await this.stop(ref);
      throw error;
    } finally {
      client.close();
    }
    await writeFile(join(runtimeDir, REF_FILE), JSON.stringify(ref), { mode: 0o600 });
    logger.info("local kernel started", { kernel: id, pid });
    return ref;
  }

  async run(ref: LocalKernelRef, code: string, options: RunOptions): Promise<RunResult> {
    const client = new KernelClient(ref.connection);
    const death = new AbortController();
    const check = () =>
      void isRunning(ref).then((alive) => {
        if (!alive) death.abort(new KernelDiedError("the kernel process has exited"));
      });
    const watch = setInterval(check, PROCESS_POLL_MS);
    try {
      return await client.execute(code, { ...options, signal: death.signal });
    } finally {
      clearInterval(watch);
      client.close();
    }
  }

  async interrupt(ref: LocalKernelRef): Promise<void> {
    const client = new KernelClient(ref.connection);
    try {
      await client.interrupt();
    } catch {
      if (await isRunning(ref)) signalGroup(ref.pid, "SIGINT");
    } finally {
      client.close();
    }
  }

  /** The process must run and its heartbeat answer; one lost ping on a loaded machine is not death. */
  async isAlive(ref: LocalKernelRef): Promise<boolean> {
    if (!(await isRunning(ref))) return false;
    const client = new KernelClient(ref.connection);
    try {
      for (let attempt = 0; attempt < PING_ATTEMPTS; attempt++) {
        if (await client.ping()) return true;
        if (!(await isRunning(ref))) return false;
      }
      return false;
    } finally {
      client.close();
    }
  }

  async stop(ref: LocalKernelRef): Promise<void> {
    if (await isRunning(ref)) {
      const client = new KernelClient(ref.connection);
      try {
        await client.shutdown();
      } finally {
        client.close();
      }
      // ipykernel 6 sometimes lingers ~10 s after acknowledging a shutdown; its state is gone
      // by then, so a short grace and then signals end it without keeping the caller waiting.
      for (const signal of ["SIGTERM", "SIGKILL"] as const) {
        if (await exitsWithin(ref, EXIT_GRACE_MS)) break;
        if (await isRunning(ref)) signalGroup(ref.pid, signal);
      }
      await exitsWithin(ref, EXIT_GRACE_MS);
    }
    await rm(ref.runtimeDir, { recursive: true, force: true });
    if (ref.ownsWorkDir) await rm(ref.workDir, { recursive: true, force: true });
    logger.info("local kernel stopped", { kernel: ref.id, pid: ref.pid });
  }

  private spawnKernel(connectionFile: string, cwd: string, env: Record<string, string>): ChildProcess {
    const log = openSync(join(dirname(connectionFile), "kernel.log"), "a");
    try {
      const child = spawn(
        this.options.python,
        ["-m", "ipykernel_launcher", "-f", connectionFile, "--HistoryManager.enabled=False"],
        { cwd, env, detached: true, stdio: ["ignore", log, log] },
      );
      child.unref();
      child.on("error", (error) => logger.error("kernel process error", { error }));
      return child;
    } finally {
      closeSync(log);
    }
  }
}

/** A connection file with a fresh random key; ports 0 let the kernel bind free ports itself. */
function freshConnection(): ConnectionInfo {
  return {
    transport: "tcp",
    ip: "127.0.0.1",
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
async function waitForPorts(file: string, child: ChildProcess, deadline: number): Promise<ConnectionInfo> {
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

async function readJson(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, "utf8"));
  } catch {
    return undefined;
  }
}

async function exitsWithin(ref: LocalKernelRef, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await isRunning(ref))) return true;
    await sleep(25);
  }
  return !(await isRunning(ref));
}
