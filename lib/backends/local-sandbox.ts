import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { promisify } from "node:util";
import type { KernelLimits, LocalConfig } from "../config.ts";
import { ConfigError } from "../errors.ts";

const run = promisify(execFile);

/**
 * The tools a working sandbox was found with. Which flavour depends on who runs the server:
 * - a normal user: bwrap makes a user namespace, where the rlimits count this kernel's processes
 *   alone (Linux ≥ 5.14 accounts RLIMIT_NPROC per user namespace);
 * - root: bwrap sets up the namespaces with root's rights, and `setpriv` then drops the kernel to a
 *   uid of its own (root's processes are exempt from RLIMIT_NPROC in any namespace), where a second,
 *   unprivileged bwrap makes the user namespace.
 */
export interface Sandbox {
  bwrap: string;
  prlimit: string;
  /** Set when the server runs as root. */
  setpriv?: string;
}

/** Where one sandboxed kernel lives; every path is absolute and seen the same inside and out. */
export interface KernelJail {
  /** Its runtime folder (connection file, IPython and matplotlib dirs): writable. */
  runtimeDir: string;
  /** Its ZeroMQ `ipc` sockets: writable, and the kernel's only way to talk to anyone. */
  socketDir: string;
  /** Its working directory: writable. */
  workDir: string;
  /** The server's state folder, hidden: it holds the other kernels' connection keys. */
  stateDir: string;
  /**
   * Folders replaced by an empty one: the server user's home, which holds credentials (`~/.aws`,
   * `~/.ssh`, …), and folders the kernel's uid could not enter anyway (see {@link closedFolders}).
   */
  hidden: string[];
  /** The Python installation and environment, bound back read-only where a hidden folder covers them. */
  pythonDirs: string[];
  /** The uid the kernel runs as under a root server. */
  uid?: number;
}

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

/**
 * What a root sandbox keeps until `setpriv` drops to the kernel's uid (which clears them all): the
 * rights to change uid, and to enter a cwd now owned by that uid.
 */
const ROOT_CAPS = ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH"];

/**
 * The command line that starts `command` inside the sandbox: no network, the host filesystem
 * read-only with the home and state folders hidden, a private `/tmp`, its own PID namespace, gone
 * with its parent, and `limits` set as rlimits just before the kernel runs.
 */
export function jailedCommand(
  sandbox: Sandbox,
  jail: KernelJail,
  limits: KernelLimits,
  command: readonly string[],
): { file: string; args: string[] } {
  const mounts = new MountPlan();
  mounts.add("--ro-bind", "/", "/");
  mounts.add("--dev", "/dev");
  mounts.add("--proc", "/proc");
  mounts.tmpfs("/tmp", { sizeBytes: limits.tmpBytes, mode: "1777" });
  // Host sockets live under /run (D-Bus, systemd, agents, docker.sock); a read-only bind does not
  // stop a connect(), so they are hidden, as /tmp's are.
  mounts.tmpfs("/run");
  for (const dir of outermost(jail.hidden.filter((dir) => dir !== "/"))) mounts.tmpfs(dir);
  const ownWorkDir = isWithin(jail.workDir, jail.runtimeDir);
  if (!ownWorkDir) mounts.bind(jail.workDir, true);
  // After the working directory, so an environment inside it stays read-only.
  for (const dir of jail.pythonDirs) mounts.bind(dir, false);
  mounts.tmpfs(jail.stateDir);
  mounts.bind(jail.runtimeDir, true);
  mounts.bind(jail.socketDir, true);

  const namespaces = sandbox.setpriv
    ? [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",
        ...ROOT_CAPS.flatMap((cap) => ["--cap-add", cap]),
      ]
    : ["--unshare-all", "--unshare-user", "--disable-userns", "--cap-drop", "ALL"];
  if (sandbox.setpriv && jail.uid === undefined)
    throw new Error("a root server's kernel needs a uid of its own");
  const dropToKernelUid =
    sandbox.setpriv && jail.uid !== undefined
      ? [
          sandbox.setpriv,
          `--reuid=${jail.uid}`,
          `--regid=${jail.uid}`,
          "--clear-groups",
          "--inh-caps=-all",
          "--bounding-set=-all",
          "--no-new-privs",
          "--",
          // An inner, unprivileged bwrap gives the kernel a user namespace of its own in which
          // no further ones can be made (their code is where local privilege escalations live),
          // and where RLIMIT_NPROC counts this kernel's processes alone.
          sandbox.bwrap,
          "--unshare-user",
          "--disable-userns",
          "--die-with-parent",
          "--dev-bind",
          "/",
          "/",
          "--chdir",
          jail.workDir,
          "--",
        ]
      : [];
  return {
    file: sandbox.bwrap,
    args: [
      ...namespaces,
      "--die-with-parent",
      "--hostname",
      "pybox",
      ...mounts.args,
      "--chdir",
      jail.workDir,
      "--",
      ...dropToKernelUid,
      ...rlimits(sandbox.prlimit, limits),
      ...command,
    ],
  };
}

function rlimits(prlimit: string, limits: KernelLimits): string[] {
  return [
    prlimit,
    `--data=${limits.memoryBytes}`,
    `--nproc=${limits.processes}`,
    `--fsize=${limits.fileBytes}`,
    `--cpu=${limits.cpuSeconds}`,
    "--core=0",
    "--",
  ];
}

/**
 * bwrap mount arguments in order. Folders bwrap must create inside a tmpfs (to mount something
 * below it) would be root-only (0700); they are made 0755 first, so the kernel's uid can pass.
 */
class MountPlan {
  readonly args: string[] = [];
  private readonly tmpfsRoots: string[] = [];
  private readonly made = new Set<string>();

  add(...args: string[]): void {
    this.args.push(...args);
  }

  tmpfs(path: string, options: { sizeBytes?: number; mode?: string } = {}): void {
    this.makeParents(path);
    if (options.sizeBytes !== undefined) this.args.push("--size", String(options.sizeBytes));
    if (options.mode !== undefined) this.args.push("--perms", options.mode);
    this.args.push("--tmpfs", path);
    this.tmpfsRoots.push(path);
  }

  bind(path: string, writable: boolean): void {
    this.makeParents(path);
    this.args.push(writable ? "--bind" : "--ro-bind", path, path);
  }

  private makeParents(path: string): void {
    for (const dir of ancestors(path)) {
      const inTmpfs = this.tmpfsRoots.some((root) => root !== dir && isWithin(dir, root));
      if (!inTmpfs || this.made.has(dir)) continue;
      this.made.add(dir);
      this.args.push("--perms", "0755", "--dir", dir);
    }
  }
}

/** The folders above `path`, outermost first, `/` left out. */
function ancestors(path: string): string[] {
  const above: string[] = [];
  for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) above.unshift(dir);
  return above;
}

/** The folders of `dirs` not inside another of them. */
function outermost(dirs: string[]): string[] {
  return [...new Set(dirs)].filter(
    (dir, _, all) => !all.some((other) => other !== dir && isWithin(dir, other)),
  );
}

/**
 * The outermost folders on the way to `dirs` that others may not enter (a root-only `/root` that
 * holds the Python installation, say). A kernel under a uid of its own could not pass them, so
 * they are hidden and what it needs is bound back.
 */
export async function closedFolders(dirs: readonly string[]): Promise<string[]> {
  const closed: string[] = [];
  for (const dir of dirs) {
    for (const ancestor of ancestors(dir)) {
      const { mode } = await stat(ancestor);
      if ((mode & 0o001) === 0) {
        closed.push(ancestor);
        break;
      }
    }
  }
  return outermost(closed);
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

/** True when `path` is `dir` or below it. */
export function isWithin(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep));
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
