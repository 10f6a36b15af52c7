import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, realpath, rm, stat } from "node:fs/promises";
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
 *   uid of its own, because root's processes are exempt from RLIMIT_NPROC in any namespace.
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

/** A fresh uid for one kernel under a root server, so no two kernels share processes or files. */
export function kernelUid(random: () => number = Math.random): number {
  return KERNEL_UID_BASE + Math.floor(random() * KERNEL_UID_SPAN);
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
    const parents: string[] = [];
    for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) parents.unshift(dir);
    for (const dir of parents) {
      const inTmpfs = this.tmpfsRoots.some((root) => root !== dir && isWithin(dir, root));
      if (!inTmpfs || this.made.has(dir)) continue;
      this.made.add(dir);
      this.args.push("--perms", "0755", "--dir", dir);
    }
  }
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
    const ancestors: string[] = [];
    for (let at = dirname(dir); at !== dirname(at); at = dirname(at)) ancestors.unshift(at);
    for (const ancestor of ancestors) {
      const { mode } = await stat(ancestor);
      if ((mode & 0o001) === 0) {
        closed.push(ancestor);
        break;
      }
    }
  }
  return outermost(closed);
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
export async function probeSandbox(mode: LocalConfig["sandbox"]): Promise<SandboxProbe> {
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

/**
 * The folders a kernel's interpreter needs: its environment and the installation it was made
 * from, resolved through symlinks (a venv's `python` points into the base installation).
 */
export async function pythonDirs(python: string): Promise<string[]> {
  const { stdout } = await run(python, [
    "-c",
    "import json, sys; print(json.dumps(sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix})))",
  ]);
  const dirs = JSON.parse(stdout) as string[];
  const real = await Promise.all(dirs.map((dir) => realpath(dir).catch(() => dir)));
  return [...new Set([...dirs, ...real])].sort();
}
