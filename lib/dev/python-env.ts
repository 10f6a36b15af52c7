import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DEFAULT_KERNEL_VENV, KERNEL_PROFILES, PROJECT_ROOT } from "../config.ts";

/** A project-local Python environment and the pinned requirements it is built from. */
export interface PythonEnv {
  dir: string;
  requirements: string;
  /** Project folders installed editable (`pip install -e`), with extras: the project's own packages. */
  editable?: readonly string[];
  /** The requirements are a complete lock, installed with `--no-deps`: exactly these, nothing more. */
  lock?: boolean;
  /** Python programs (`-c` code) run by the env's interpreter after the install, part of the build. */
  finish?: readonly string[];
}

/** The kernels' environment (ipykernel, pandas, matplotlib): what `npm start` needs. */
export const KERNEL_ENV: PythonEnv = {
  dir: DEFAULT_KERNEL_VENV,
  requirements: join(PROJECT_ROOT, "python", "requirements.txt"),
};

/** Jupyter Enterprise Gateway, for the gateway backend's tests and bench (pins of its own). */
export const GATEWAY_ENV: PythonEnv = {
  dir: join(PROJECT_ROOT, ".venv-gateway"),
  requirements: join(PROJECT_ROOT, "python", "requirements-gateway.txt"),
};

/** A plain jupyter_server and pybox itself, for tests and bench. */
export const TOOLS_ENV: PythonEnv = {
  dir: join(PROJECT_ROOT, ".venv-tools"),
  requirements: join(PROJECT_ROOT, "python", "requirements-tools.txt"),
};

/**
 * tablegpt-agent 0.2.27 from PyPI with this project's Python client (`clients/python`, editable)
 * and pytest: the acceptance suite drives the agent's own `IPythonTool` through our client.
 */
export const CLIENT_ENV: PythonEnv = {
  dir: join(PROJECT_ROOT, ".venv-client"),
  requirements: join(PROJECT_ROOT, "python", "requirements-client.txt"),
  editable: ["clients/python[aws]"],
};

/** The cluster rig's kernel image: the kernel env's packages and the launcher's pycryptodomex. */
export const RIG_KERNEL_ENV: PythonEnv = {
  dir: join(PROJECT_ROOT, ".venv-rig-kernel"),
  requirements: join(PROJECT_ROOT, "python", "requirements-rig-kernel.txt"),
};

/** The cluster rig's kernel-monitor image: the monitor's requirements, pinned. */
export const RIG_MONITOR_ENV: PythonEnv = {
  dir: join(PROJECT_ROOT, ".venv-rig-monitor"),
  requirements: join(PROJECT_ROOT, "python", "requirements-rig-monitor.txt"),
};

/**
 * The `tablegpt` kernel profile preset (`PYBOX_KERNEL_PROFILE=tablegpt`): tablegpt-agent's kernel
 * packages and its IPython profile, apart from `.venv` because tablegpt-agent needs pandas<3. The
 * build copies mplfonts' CJK fonts into matplotlib's font folder (what `mplfonts init` does, with no
 * network), so the profile's `use_font("Noto Serif CJK SC")` finds them inside the sandbox.
 */
export const TABLEGPT_KERNEL_ENV: PythonEnv = {
  dir: KERNEL_PROFILES.tablegpt.venv,
  requirements: join(PROJECT_ROOT, "python", "requirements-tablegpt.txt"),
  lock: true,
  finish: [
    // A throwaway MPLCONFIGDIR: a font list cached before the copy would hide the fonts.
    "import os, tempfile\nwith tempfile.TemporaryDirectory() as d:\n    os.environ['MPLCONFIGDIR'] = d\n    from mplfonts.util.manage import install_fonts\n    install_fonts()",
  ],
};

/**
 * The project-local kernel environment `python` is the interpreter of, if it is one: `npm start`
 * builds that one on first use, and leaves an interpreter of the operator's own alone.
 */
export function kernelEnvOf(python: string): PythonEnv | undefined {
  return [KERNEL_ENV, TABLEGPT_KERNEL_ENV].find((env) => join(env.dir, "bin", "python") === python);
}

/**
 * Makes sure an environment exists with its pinned requirements installed. The first call creates
 * it and says so (it takes a minute); later calls compare a hash of the requirements and return at
 * once. Returns the environment's `bin/` folder.
 */
export async function ensurePythonEnv(
  env: PythonEnv = KERNEL_ENV,
  say: (line: string) => void = console.log,
): Promise<string> {
  const bin = join(env.dir, "bin");
  const python = join(bin, "python");
  const marker = join(env.dir, ".pybox-requirements.sha256");
  const hash = createHash("sha256").update(await readFile(env.requirements));
  // An editable package's own dependencies live in its pyproject.toml: a change there rebuilds too.
  for (const spec of env.editable ?? [])
    hash.update(await readFile(join(PROJECT_ROOT, editableDir(spec), "pyproject.toml")));
  if (env.lock || env.finish) hash.update(JSON.stringify([env.lock, env.finish]));
  const wanted = hash.digest("hex");
  const have = existsSync(marker) ? (await readFile(marker, "utf8")).trim() : "";
  if (existsSync(python) && have === wanted) return bin;

  say(`Preparing the Python environment ${env.dir} (first run only, takes a minute or two)...`);
  if (!existsSync(python)) await exec("python3", ["-m", "venv", env.dir]);
  await exec(python, [
    "-m",
    "pip",
    "install",
    "--quiet",
    "--disable-pip-version-check",
    ...(env.lock ? ["--no-deps"] : []),
    "-r",
    env.requirements,
    ...(env.editable ?? []).flatMap((spec) => ["-e", join(PROJECT_ROOT, editableDir(spec)) + extrasOf(spec)]),
  ]);
  for (const program of env.finish ?? []) await exec(python, ["-c", program]);
  await writeFile(marker, `${wanted}\n`);
  say(`Python environment ${env.dir} ready.`);
  return bin;
}

/** `clients/python[aws]` → `clients/python`. */
function editableDir(spec: string): string {
  return spec.replace(/\[.*\]$/, "");
}

/** `clients/python[aws]` → `[aws]`. */
function extrasOf(spec: string): string {
  return /\[.*\]$/.exec(spec)?.[0] ?? "";
}

function exec(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited with ${code}`)),
    );
  });
}
