import { stat } from "node:fs/promises";
import { dirname, relative, sep } from "node:path";
import type { KernelLimits } from "../../config.ts";

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

/** A kernel's `/dev/shm`: Docker's default size, or less when its `/tmp` is smaller. */
const SHM_BYTES = 64 * 1024 ** 2;

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
  // POSIX semaphores and shared memory (multiprocessing, joblib under scikit-learn) live here.
  mounts.tmpfs("/dev/shm", { sizeBytes: Math.min(SHM_BYTES, limits.tmpBytes), mode: "1777" });
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

/** True when `path` is `dir` or below it. */
export function isWithin(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep));
}
