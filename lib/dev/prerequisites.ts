import { spawn } from "node:child_process";

/**
 * What the checks and the installer need of the machine, injected so they can be tested without
 * touching it: who we are, and a way to run a command.
 */
export interface System {
  /** This process's uid; only root (0) installs packages. */
  uid: number;
  /** Runs a command to its end. A command that is missing or fails is a result, never a throw. */
  run(file: string, args: readonly string[]): Promise<CommandResult>;
}

/** How a command ended. */
export interface CommandResult {
  /** Its exit code; null when it could not be started or was killed. */
  code: number | null;
  /** The end of what it printed (stdout and stderr), for a failure message. */
  output: string;
}

/** A tool the tests or the server need from the system, and the Debian package that provides it. */
export interface Prerequisite {
  /** The tool as a user would look for it (`bwrap`, `python3 -m venv`). */
  tool: string;
  debianPackage: string;
  /** What it is for, said when it is installed or found missing. */
  why: string;
  /** True when it works here (or is not needed here). */
  present(system: System): Promise<boolean>;
}

/**
 * True when `command` is an executable on the PATH, or with `systemDirs` also in the system's own
 * bin folders, where the sandbox probe looks too (lib/backends/local/sandbox.ts).
 */
function onPath(
  command: string,
  options: { systemDirs?: boolean } = {},
): (system: System) => Promise<boolean> {
  const path = options.systemDirs ? 'PATH="$PATH:/usr/bin:/bin:/usr/sbin:/sbin"; ' : "";
  return async (system) =>
    (await system.run("sh", ["-c", `${path}command -v "$1"`, "sh", command])).code === 0;
}

/** Debian keeps `ensurepip` in python3-venv: without it `python3 -m venv` makes no environment. */
const PYTHON_VENV: Prerequisite = {
  tool: "python3 -m venv",
  debianPackage: "python3-venv",
  why: "makes the project's Python environments (.venv*)",
  present: async (system) => (await system.run("python3", ["-c", "import ensurepip, venv"])).code === 0,
};

const JAVA: Prerequisite = {
  tool: "java",
  debianPackage: "default-jre-headless",
  why: "runs ElasticMQ, the tests' SQS API",
  present: onPath("java"),
};

const MAVEN: Prerequisite = {
  tool: "mvn",
  debianPackage: "maven",
  why: "fetches ElasticMQ from Maven Central",
  present: onPath("mvn"),
};

const BWRAP: Prerequisite = {
  tool: "bwrap",
  debianPackage: "bubblewrap",
  why: "confines each local kernel (no network, read-only host)",
  present: onPath("bwrap", { systemDirs: true }),
};

const PRLIMIT: Prerequisite = {
  tool: "prlimit",
  debianPackage: "util-linux",
  why: "sets each sandboxed kernel's limits",
  present: onPath("prlimit", { systemDirs: true }),
};

/** Only a root server uses it (lib/backends/local/sandbox.ts), to give each kernel a uid of its own. */
const SETPRIV: Prerequisite = {
  tool: "setpriv",
  debianPackage: "util-linux",
  why: "drops a root server's kernels to a uid of their own",
  present: async (system) => system.uid !== 0 || (await onPath("setpriv", { systemDirs: true })(system)),
};

/** The cluster rig's pod network: a bridge, and a network namespace per pod (test/cluster/rig). */
const IPROUTE2: Prerequisite = {
  tool: "ip",
  debianPackage: "iproute2",
  why: "gives each pod of the cluster rig its own network namespace",
  present: onPath("ip", { systemDirs: true }),
};

/** The cluster rig's certificates: a CA, the API server's, its clients'. */
const OPENSSL: Prerequisite = {
  tool: "openssl",
  debianPackage: "openssl",
  why: "makes the cluster rig's certificates",
  present: onPath("openssl", { systemDirs: true }),
};

/** The kubelet double enters each pod's network namespace with it. */
const NSENTER: Prerequisite = {
  tool: "nsenter",
  debianPackage: "util-linux",
  why: "runs the cluster rig's containers in their pod's network namespace",
  present: onPath("nsenter", { systemDirs: true }),
};

/** What confines local kernels (see lib/backends/local/sandbox.ts): `npm start` provides these. */
export const SANDBOX_PREREQUISITES: readonly Prerequisite[] = [BWRAP, PRLIMIT, SETPRIV];

/** Everything `npm test` needs of the system beyond Node. */
export const TEST_PREREQUISITES: readonly Prerequisite[] = [
  PYTHON_VENV,
  JAVA,
  MAVEN,
  ...SANDBOX_PREREQUISITES,
  IPROUTE2,
  OPENSSL,
  NSENTER,
];

/** The prerequisites that do not work here, in their order. */
export async function findMissing(
  prerequisites: readonly Prerequisite[],
  system: System,
): Promise<Prerequisite[]> {
  const present = await Promise.all(prerequisites.map((prerequisite) => prerequisite.present(system)));
  return prerequisites.filter((_, index) => !present[index]);
}

/** What to do about the missing prerequisites. */
export type SetupPlan =
  | { kind: "ready" }
  | { kind: "install"; packages: string[] }
  | { kind: "instruct"; packages: string[]; reason: string };

/**
 * Decides from what is missing and what this process may do: nothing when all is there, an
 * install as root with apt-get, else instructions for the user.
 */
export function planSetup(
  missing: readonly Prerequisite[],
  host: { root: boolean; aptGet: boolean },
): SetupPlan {
  if (missing.length === 0) return { kind: "ready" };
  const packages = packagesOf(missing);
  if (!host.aptGet) return { kind: "instruct", packages, reason: "apt-get is not available here" };
  if (!host.root) return { kind: "instruct", packages, reason: "installing them needs root" };
  return { kind: "install", packages };
}

/** The Debian packages to install for `missing`, each once. */
export function packagesOf(missing: readonly Prerequisite[]): string[] {
  return [...new Set(missing.map((prerequisite) => prerequisite.debianPackage))];
}

/** The command a user types to install `packages`. */
export function installCommand(packages: readonly string[], root: boolean): string {
  const sudo = root ? "" : "sudo ";
  return `${sudo}apt-get update && ${sudo}apt-get install -y ${packages.join(" ")}`;
}

/** One message naming what is missing, why it is needed, why it was not installed, and how to install it. */
export function missingMessage(
  missing: readonly Prerequisite[],
  reason: string,
  options: { purpose: string; root: boolean; aptGet: boolean },
): string {
  const packages = packagesOf(missing);
  const lines = [
    `${options.purpose} needs system packages that are missing here:`,
    ...packages.map((name) => {
      const tools = missing.filter((prerequisite) => prerequisite.debianPackage === name);
      return `  ${name}: ${tools.map((prerequisite) => `${prerequisite.tool} ${prerequisite.why}`).join("; ")}`;
    }),
    `Why they were not installed: ${reason}.`,
    options.aptGet
      ? "Install them with:"
      : "Install them with (Debian/Ubuntu; elsewhere install the same tools by your system's means):",
    `  ${installCommand(packages, options.root)}`,
  ];
  return lines.join("\n");
}

/** What {@link provideSystemPackages} did. */
export type SetupOutcome =
  | { ok: true; installed: string[] }
  | { ok: false; attempted: boolean; packages: string[]; message: string };

/**
 * Makes sure `prerequisites` work here: installs the missing ones as root with apt-get (one
 * `apt-get update`, one `apt-get install`, announced in one line), else returns one message naming
 * each missing package and the command that installs it. `purpose` names who needs them.
 */
export async function provideSystemPackages(
  prerequisites: readonly Prerequisite[],
  system: System,
  options: { purpose: string; say?: (line: string) => void },
): Promise<SetupOutcome> {
  const say = options.say ?? console.log;
  const missing = await findMissing(prerequisites, system);
  if (missing.length === 0) return { ok: true, installed: [] };
  const host = { root: system.uid === 0, aptGet: await onPath("apt-get")(system) };
  const plan = planSetup(missing, host);
  if (plan.kind === "ready") return { ok: true, installed: [] };
  const context = { purpose: options.purpose, ...host };
  if (plan.kind === "instruct") {
    return {
      ok: false,
      attempted: false,
      packages: plan.packages,
      message: missingMessage(missing, plan.reason, context),
    };
  }

  say(
    `Installing ${plan.packages.join(", ")} with apt-get (running as root), for ${options.purpose}: ${missing
      .map((prerequisite) => `${prerequisite.tool} ${prerequisite.why}`)
      .join("; ")}.`,
  );
  const update = await system.run("apt-get", ["update", "-qq"]);
  const install = await system.run("env", [
    "DEBIAN_FRONTEND=noninteractive",
    "apt-get",
    "install",
    "-y",
    "-qq",
    ...plan.packages,
  ]);
  if (install.code !== 0) {
    const failures = [
      ...(update.code === 0 ? [] : [failure("apt-get update", update)]),
      failure("apt-get install", install),
    ];
    return {
      ok: false,
      attempted: true,
      packages: plan.packages,
      message: missingMessage(missing, failures.join("\n"), context),
    };
  }
  const stillMissing = await findMissing(missing, system);
  if (stillMissing.length > 0) {
    return {
      ok: false,
      attempted: true,
      packages: packagesOf(stillMissing),
      message: missingMessage(
        stillMissing,
        `apt-get install succeeded, but these still do not work: ${stillMissing.map((prerequisite) => prerequisite.tool).join(", ")}`,
        context,
      ),
    };
  }
  return { ok: true, installed: plan.packages };
}

/** A failed step and the end of what it printed. */
function failure(step: string, result: CommandResult): string {
  return `${step} failed (exit ${result.code ?? "signal"}): ${result.output.trim() || "no output"}`;
}

/**
 * `npm start`'s part: installs bubblewrap (and its helpers) when it can, so kernels are confined
 * from the first run. Where it cannot, it stays quiet and the server's warning banner says why; an
 * install that was tried and failed is reported.
 */
export async function provideSandboxTools(
  system: System = hostSystem(),
  say: (line: string) => void = console.log,
): Promise<void> {
  const outcome = await provideSystemPackages(SANDBOX_PREREQUISITES, system, {
    purpose: "sandboxing local kernels",
    say,
  });
  if (!outcome.ok && outcome.attempted) say(outcome.message);
}

/** How many characters of a command's output are kept for a failure message. */
const OUTPUT_TAIL_CHARS = 2_000;

/** This machine: the real uid, and commands run as child processes. */
export function hostSystem(): System {
  return { uid: process.getuid?.() ?? -1, run: runCommand };
}

function runCommand(file: string, args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve) => {
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
    };
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", (error) => resolve({ code: null, output: error.message }));
    child.on("close", (code) => resolve({ code, output }));
  });
}
