import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { promisify } from "node:util";
import type { LocalConfig } from "../../config.ts";
import { ConfigError } from "../../errors.ts";
import { isWithin, jailedCommand, type Sandbox } from "./bwrap.ts";

const run = promisify(execFile);

/** Where the uids of kernels under a root server are drawn from: far above any real account. */
const KERNEL_UID_BASE = 1_600_000_000;
const KERNEL_UID_SPAN = 1 << 24;

/** A uid for one kernel under a root server, drawn from {@link KERNEL_UID_BASE} upwards. */
export function kernelUid(random: () => number = Math.random): number {
  return KERNEL_UID_BASE + Math.floor(random() * KERNEL_UID_SPAN);
}

/**
 * A kernel uid no process on this machine runs as, so no two kernels share a process limit or
 * can signal each other's processes.
 */
export async function unusedKernelUid(): Promise<number> {
  const inUse = new Set<number>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const status = await readFile(`/proc/${name}/status`, "utf8").catch(() => "");
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (uid !== undefined) inUse.add(Number(uid));
  }
  for (;;) {
    const uid = kernelUid();
    if (!inUse.has(uid)) return uid;
  }
}

/** Folders a kernel's writable cwd may never be, or be inside: the system's own. */
const SYSTEM_DIRS = [
  "/bin",
  "/boot",
  "/dev",
  "/etc",
  "/lib",
  "/lib32",
  "/lib64",
  "/libx32",
  "/nix",
  "/proc",
  "/run",
  "/sbin",
  "/snap",
  "/sys",
  "/usr",
  "/var",
];

/** What a sandboxed kernel's cwd is checked against. */
export interface CwdGuard {
  stateDir: string;
  /** The server user's home: a cwd inside it is fine, one that contains it would expose it. */
  home: string;
  /** Where every kernel's socket folder is (`os.tmpdir()`). */
  tmp: string;
  pythonDirs: readonly string[];
  /** `PYBOX_LOCAL_CWD_ROOTS`: when set, a cwd must be inside one of them. */
  roots?: readonly string[];
}

/**
 * Why `cwd` (absolute, resolved) may not be a sandboxed kernel's writable working directory, or
 * undefined when it may. The caller picks it, so it must not open up the system, the server's
 * state, the home the sandbox hides, or another kernel's sockets.
 */
export function cwdRefusal(cwd: string, guard: CwdGuard): string | undefined {
  if (guard.roots && guard.roots.length > 0 && !guard.roots.some((root) => isWithin(cwd, root))) {
    return `cwd '${cwd}' is outside the folders this server lends to kernels (PYBOX_LOCAL_CWD_ROOTS)`;
  }
  const system = SYSTEM_DIRS.find((dir) => isWithin(cwd, dir));
  if (system) return `cwd '${cwd}' is inside the system folder ${system}`;
  if (isWithin(cwd, guard.stateDir)) return `cwd '${cwd}' is inside the server's state folder`;
  const exposed = ["/", guard.stateDir, guard.home, guard.tmp, ...guard.pythonDirs, ...SYSTEM_DIRS].find(
    (dir) => isWithin(dir, cwd),
  );
  if (exposed) return `cwd '${cwd}' contains ${exposed}, which a kernel must not be able to write`;
  if (isWithin(cwd, guard.tmp) && /^pybox-k-/.test(relative(guard.tmp, cwd))) {
    return `cwd '${cwd}' is another kernel's socket folder`;
  }
  return undefined;
}

/** Why local kernels are not sandboxed, or the sandbox they get. */
export type SandboxProbe = { sandbox: Sandbox } | { sandbox?: undefined; reason: string };

/**
 * Finds the tools and proves they work here with a trial run of the real flavour (user namespaces
 * may be disabled, bwrap too old). `bwrap` mode turns a failure into a {@link ConfigError}; `auto`
 * reports it, for the server to say loudly that kernels are not isolated.
 */
export function probeSandbox(mode: LocalConfig["sandbox"]): Promise<SandboxProbe> {
  // Once per process: the dev server reports it at start, and its backend asks again.
  let probe = probes.get(mode);
  if (!probe) {
    probe = findSandbox(mode);
    probes.set(mode, probe);
  }
  return probe;
}

const probes = new Map<LocalConfig["sandbox"], Promise<SandboxProbe>>();

async function findSandbox(mode: LocalConfig["sandbox"]): Promise<SandboxProbe> {
  if (mode === "off") return { reason: "PYBOX_LOCAL_SANDBOX=off" };
  const [bwrap, prlimit, setpriv] = await Promise.all(["bwrap", "prlimit", "setpriv"].map(findExecutable));
  const isRoot = process.getuid?.() === 0;
  let probe: SandboxProbe;
  if (!bwrap || !prlimit || (isRoot && !setpriv)) {
    const missing = [
      !bwrap && "bwrap (Debian package bubblewrap)",
      !prlimit && "prlimit",
      isRoot && !setpriv && "setpriv",
    ];
    probe = { reason: `not found on PATH: ${missing.filter(Boolean).join(", ")}` };
  } else {
    const sandbox: Sandbox = isRoot && setpriv ? { bwrap, prlimit, setpriv } : { bwrap, prlimit };
    probe = await trial(sandbox);
  }
  if (mode === "bwrap" && !probe.sandbox) {
    throw new ConfigError(`PYBOX_LOCAL_SANDBOX=bwrap, but the sandbox does not work here: ${probe.reason}`);
  }
  return probe;
}

async function trial(sandbox: Sandbox): Promise<SandboxProbe> {
  const root = await mkdtemp(join(tmpdir(), "pybox-probe-"));
  try {
    const stateDir = join(root, "state");
    const runtimeDir = join(stateDir, "kernel");
    const socketDir = join(root, "sockets");
    await mkdir(runtimeDir, { recursive: true });
    await mkdir(socketDir);
    const { file, args } = jailedCommand(
      sandbox,
      { runtimeDir, socketDir, workDir: runtimeDir, stateDir, hidden: [], pythonDirs: [], uid: kernelUid() },
      { memoryBytes: 2 ** 30, processes: 16, fileBytes: 2 ** 20, cpuSeconds: 10, tmpBytes: 2 ** 20 },
      ["/bin/sh", "-c", "true"],
    );
    await run(file, args, { timeout: 10_000 });
    return { sandbox };
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    return { reason: `a trial run of bwrap failed: ${stderr || (error as Error).message}` };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/bin", "/usr/sbin", "/sbin"];
  for (const dir of dirs.filter(Boolean)) {
    const path = join(dir, name);
    if (
      await access(path, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return path;
  }
  return undefined;
}

/** What the sandbox needs to know of the kernels' interpreter. */
export interface Interpreter {
  /**
   * The folders it needs: its environment and the installation it was made from, resolved
   * through symlinks (a venv's `python` points into the base installation).
   */
  dirs: string[];
  /** Python 3.11+ has `-P`: `-m ipykernel_launcher` then never imports from the cwd. */
  safePath: boolean;
}

/** Asks the (trusted) interpreter itself, once per process. */
export async function inspectInterpreter(python: string): Promise<Interpreter> {
  const { stdout } = await run(python, [
    "-c",
    "import json, sys; print(json.dumps({'dirs': sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}), 'safePath': sys.version_info >= (3, 11)}))",
  ]);
  const { dirs, safePath } = JSON.parse(stdout) as Interpreter;
  const real = await Promise.all(dirs.map((dir) => realpath(dir).catch(() => dir)));
  return { dirs: [...new Set([...dirs, ...real])].sort(), safePath };
}
