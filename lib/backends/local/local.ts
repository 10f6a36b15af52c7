import { randomUUID } from "node:crypto";
import { constants } from "node:fs";
import {
  access,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { DEFAULT_KERNEL_LIMITS, type KernelLimits, type LocalConfig } from "../../config.ts";
import type { RunResult } from "../../core/run-result.ts";
import { BackendError, BackendUnavailableError, ConfigError, ValidationError } from "../../errors.ts";
import { KernelClient } from "../../jupyter/client.ts";
import { ConnectionInfoSchema } from "../../jupyter/connection.ts";
import { evaluate } from "../../jupyter/execution.ts";
import { KernelClients } from "../../jupyter/kept-clients.ts";
import { logger } from "../../logger.ts";
import { envOnlyPooling } from "../pool-adoption.ts";
import type {
  Backend,
  HelperRequest,
  KernelInventory,
  KernelPooling,
  RunOptions,
  StartSpec,
} from "../port.ts";
import { isRunning, readProcess, signalGroup, whileRunning } from "../process.ts";
import { closedFolders } from "./bwrap.ts";
import { removeKernelFolders } from "./folders.ts";
import {
  freshConnection,
  type Jail,
  kernelFontCache,
  readJson,
  spawnKernel,
  waitForPorts,
} from "./launch.ts";
import { kernelProfile } from "./profile.ts";
import {
  cwdRefusal,
  type Interpreter,
  inspectInterpreter,
  probeSandbox,
  type SandboxProbe,
  unusedKernelUid,
} from "./sandbox.ts";

const LocalRefSchema = z.object({
  backend: z.literal("local"),
  id: z.uuid(),
  pid: z.number().int().positive(),
  startTime: z.number().nullable(),
  connection: ConnectionInfoSchema,
  runtimeDir: z.string().min(1),
  workDir: z.string().min(1),
  ownsWorkDir: z.boolean(),
  /** Inside bubblewrap: signals go to the sandbox as a whole, never to the kernel alone. */
  sandboxed: z.boolean().default(false),
  /** The `ipc` socket folder of a sandboxed kernel (short, for the 107-byte socket path limit). */
  socketDir: z.string().min(1).optional(),
  /** Who owned the caller's cwd before it was lent to a kernel running under a uid of its own. */
  cwdOwner: z.object({ uid: z.number().int(), gid: z.number().int(), ino: z.number() }).optional(),
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
  /** How long a kernel's sockets stay open after a use for the next (`PYBOX_KEEP_CONNECTIONS_MS`); default none. */
  keepConnectionsMs?: number;
  /** How kernels are confined (default `auto`: bubblewrap where it works). */
  sandbox?: LocalConfig["sandbox"];
  /** What each sandboxed kernel may use. */
  limits?: KernelLimits;
  /** When set, a sandboxed kernel's `cwd` must be inside one of these folders. */
  cwdRoots?: string[];
  /** The IPython profile every kernel starts from (`PYBOX_KERNEL_PROFILE_DIR` or a preset's). */
  profileDir?: string;
}

/** mkdir failures that mean the asked-for directory can't exist, as opposed to a broken host. */
const UNUSABLE_DIR = new Set(["ENAMETOOLONG", "ENOTDIR", "EEXIST", "EACCES", "EROFS", "EPERM", "ELOOP"]);

/**
 * Where each kernel's ref is kept, beside (never inside) its runtime folder: a sandboxed kernel can
 * write its runtime folder, and the reaper acts on these refs (signals, deletes), so they must be
 * out of its reach (see `inventory`).
 */
const REF_DIR = "refs";

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
  private interpreterInfo: Promise<Interpreter> | undefined;

  private readonly kept: KernelClients;
  readonly pooling: KernelPooling<LocalKernelRef>;

  constructor(private readonly options: LocalBackendOptions) {
    this.kept = new KernelClients(options.keepConnectionsMs ?? 0);
    // An adopted kernel's inventory entry is renewed: the orphan sweep's grace counts from it.
    this.pooling = envOnlyPooling(
      this,
      `local:${options.python}`,
      "a local kernel's folder is bound at start",
      {
        adopted: (ref) => utimes(refFile(options.stateDir, ref.id), new Date(), new Date()),
      },
    );
  }

  /** Each kernel's ref is also kept in its runtime folder, so kernels can be found without records. */
  readonly inventory: KernelInventory<LocalKernelRef> = {
    list: async () => {
      const root = join(this.options.stateDir, REF_DIR);
      const names = await readdir(root).catch(() => []);
      const kernels: Array<{ ref: LocalKernelRef; startedAt: number }> = [];
      for (const name of names) {
        const file = join(root, name);
        const parsed = LocalRefSchema.safeParse(await readJson(file));
        // Acted on by the reaper (signals, deletes): only a ref that is where and what we wrote.
        if (!parsed.success || !this.isOwnRef(parsed.data, name)) continue;
        const info = await stat(file).catch(() => undefined);
        if (info) kernels.push({ ref: parsed.data, startedAt: info.mtimeMs });
      }
      return kernels;
    },
    keyOf: (ref) => ref.id,
  };

  private isOwnRef(ref: LocalKernelRef, fileName: string): boolean {
    return (
      fileName === `${ref.id}.json` &&
      ref.runtimeDir === join(this.options.stateDir, "kernels", ref.id) &&
      ref.pid > 1 &&
      ref.pid !== process.pid
    );
  }

  parseRef(value: unknown): LocalKernelRef {
    return LocalRefSchema.parse(value);
  }

  /**
   * How this backend's kernels are confined, found once per process. The dev server asks at start,
   * to say loudly when kernels would run unconfined.
   */
  isolation(): Promise<SandboxProbe> {
    return probeSandbox(this.options.sandbox ?? "auto");
  }

  async start(spec: StartSpec): Promise<LocalKernelRef> {
    const { python, stateDir, startTimeoutMs } = this.options;
    await access(python, constants.X_OK).catch((cause) => {
      throw new ConfigError(`the kernel interpreter ${python} is missing; run: npm run setup:python`, {
        cause,
      });
    });
    const { sandbox } = await this.isolation();
    if (sandbox && spec.cwd !== undefined) await this.checkCwd(spec.cwd);
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
    const profile = this.options.profileDir && (await kernelProfile(this.options.profileDir, runtimeDir));
    const socketDir = sandbox ? await mkdtemp(join(tmpdir(), "pybox-k-")) : undefined;
    const connectionFile = join(runtimeDir, "connection.json");
    await writeFile(connectionFile, JSON.stringify(freshConnection(socketDir)), { mode: 0o600 });

    const deadline = Date.now() + startTimeoutMs;
    const env: Record<string, string> = {
      ...spec.env,
      PATH: `${dirname(python)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: workDir,
      LANG: spec.env.LANG ?? "C.UTF-8",
      IPYTHONDIR: join(runtimeDir, "ipython"),
      MPLCONFIGDIR: join(stateDir, "cache", "matplotlib"),
    };
    let jail: Jail | undefined;
    let cwdOwner: LocalKernelRef["cwdOwner"];
    if (sandbox && socketDir) {
      const uid = sandbox.setpriv ? await unusedKernelUid() : undefined;
      const interpreter = await this.interpreter();
      env.MPLCONFIGDIR = await kernelFontCache(python, stateDir, runtimeDir);
      env.USER = "pybox";
      env.LOGNAME = "pybox";
      jail = {
        sandbox,
        safePath: interpreter.safePath,
        jail: {
          runtimeDir,
          socketDir,
          workDir,
          stateDir,
          hidden: [homedir(), ...(uid === undefined ? [] : await closedFolders(interpreter.dirs))],
          pythonDirs: interpreter.dirs,
          ...(uid === undefined ? {} : { uid }),
        },
      };
      // A kernel under a root server has a uid of its own: hand it what it must write. The
      // caller's cwd is lent for the kernel's life (the folder itself, not what is in it).
      if (uid !== undefined) {
        const owned = [runtimeDir, join(runtimeDir, "ipython"), env.MPLCONFIGDIR, connectionFile, socketDir];
        if (spec.cwd !== undefined) {
          const { uid: ownerUid, gid, ino } = await lstat(workDir);
          cwdOwner = { uid: ownerUid, gid, ino };
        }
        await Promise.all([...owned, workDir].map((path) => chown(path, uid, uid)));
      }
    }
    const child = spawnKernel(
      python,
      connectionFile,
      workDir,
      env,
      jail,
      this.options.limits ?? DEFAULT_KERNEL_LIMITS,
      profile,
    );
    const pid = child.pid;
    if (pid === undefined) throw new BackendUnavailableError("the kernel process could not be spawned");
    const identity = (await readProcess(pid)) ?? { pid, startTime: null };
    const folders = { runtimeDir, workDir, ownsWorkDir: spec.cwd === undefined, socketDir, cwdOwner };
    const connection = await waitForPorts(connectionFile, child, deadline).catch(async (error) => {
      // What the kernel (or bwrap) said is for the operator's log; the caller gets the error alone.
      const said = await readFile(join(runtimeDir, "kernel.log"), "utf8").catch(() => "");
      logger.error("kernel start failed", { kernel: id, output: said.slice(-2_000) });
      await removeKernelFolders(folders);
      throw error;
    });
    if (socketDir && (connection.transport !== "ipc" || connection.ip !== join(socketDir, "k"))) {
      await removeKernelFolders(folders);
      throw new BackendError("a sandboxed kernel announced sockets outside its own folder");
    }
    const ref: LocalKernelRef = {
      backend: "local",
      id,
      pid,
      startTime: identity.startTime,
      connection,
      runtimeDir,
      workDir,
      ownsWorkDir: spec.cwd === undefined,
      sandboxed: jail !== undefined,
      ...(socketDir ? { socketDir } : {}),
      ...(cwdOwner ? { cwdOwner } : {}),
    };
    // Written before the handshake, so a crash from here on leaves a kernel the reaper can find.
    await mkdir(join(stateDir, REF_DIR), { recursive: true });
    await writeFile(refFile(stateDir, id), JSON.stringify(ref), { mode: 0o600 });
    try {
      await this.kept.use(ref.connection, (client) => client.handshake(), {
        handshakeTimeoutMs: Math.max(1, deadline - Date.now()),
      });
    } catch (error) {
      await this.stop(ref);
      throw error;
    }
    logger.info("local kernel started", { kernel: id, pid, sandboxed: ref.sandboxed });
    return ref;
  }

  async run(ref: LocalKernelRef, code: string, options: RunOptions): Promise<RunResult> {
    return this.connected(
      ref,
      (client, signal) => client.execute(code, { ...options, signal }),
      options.admitted,
    );
  }

  async helper<T>(ref: LocalKernelRef, request: HelperRequest<T>): Promise<T> {
    const { code, expression, schema, timeoutMs } = request;
    return this.connected(ref, (client, signal) =>
      evaluate(client, expression, schema, { code, timeoutMs, signal }),
    );
  }

  async interrupt(ref: LocalKernelRef): Promise<void> {
    const client = new KernelClient(ref.connection);
    try {
      await client.interrupt();
    } catch {
      // SIGINT to a sandbox's group would end bwrap, and the kernel with it.
      if (!ref.sandboxed && (await isRunning(ref))) signalGroup(ref.pid, "SIGINT");
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

  closeKept(): void {
    this.kept.clear();
  }

  async stop(ref: LocalKernelRef): Promise<void> {
    this.kept.drop(ref.connection);
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
    await removeKernelFolders(ref);
    await rm(refFile(this.options.stateDir, ref.id), { force: true });
    logger.info("local kernel stopped", { kernel: ref.id, pid: ref.pid });
  }

  /**
   * A client for one request, kept for the next when it succeeds; `signal` aborts once the
   * kernel's process is gone, so a request to a kernel that died ends at once.
   */
  private async connected<T>(
    ref: LocalKernelRef,
    use: (client: KernelClient, signal: AbortSignal) => Promise<T>,
    admitted?: Promise<unknown>,
  ): Promise<T> {
    return this.kept.use(
      ref.connection,
      (client) => whileRunning(ref, PROCESS_POLL_MS, (signal) => use(client, signal)),
      { admitted },
    );
  }

  /**
   * A sandboxed kernel may write only in its cwd, which the caller picks: it is checked against
   * {@link cwdRefusal} before anything is made, and must be reached without symlinks, so the folder
   * checked is the folder bound (and, under root, lent).
   */
  private async checkCwd(cwd: string): Promise<void> {
    const { stateDir, cwdRoots } = this.options;
    const refusal = cwdRefusal(resolve(cwd), {
      stateDir,
      home: homedir(),
      tmp: tmpdir(),
      pythonDirs: (await this.interpreter()).dirs,
      ...(cwdRoots ? { roots: cwdRoots } : {}),
    });
    if (refusal) throw new ValidationError(refusal);
    let existing = resolve(cwd);
    while (!(await lstat(existing).catch(() => undefined))) existing = dirname(existing);
    if ((await realpath(existing)) !== existing) {
      throw new ValidationError(`cwd '${cwd}' goes through a symlink; give the folder's real path`);
    }
  }

  private interpreter(): Promise<Interpreter> {
    this.interpreterInfo ??= inspectInterpreter(this.options.python);
    return this.interpreterInfo;
  }
}

/** Where a kernel's ref is kept (see {@link REF_DIR}). */
export function refFile(stateDir: string, id: string): string {
  return join(stateDir, REF_DIR, `${id}.json`);
}

async function exitsWithin(ref: LocalKernelRef, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await isRunning(ref))) return true;
    await sleep(25);
  }
  return !(await isRunning(ref));
}
