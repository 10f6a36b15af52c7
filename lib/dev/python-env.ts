import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PROJECT_ROOT } from "../config.ts";

/** The project's own Python environment: where `npm start` and the tests find ipykernel. */
export const VENV_DIR = join(PROJECT_ROOT, ".venv");

/** Pinned kernel packages; the venv is rebuilt when this file changes. */
export const REQUIREMENTS = join(PROJECT_ROOT, "python", "requirements.txt");

const MARKER = join(VENV_DIR, ".pybox-requirements.sha256");

/**
 * Makes sure `.venv` exists with the pinned requirements installed. The first call creates it and
 * says so (it takes a minute); later calls compare a hash of the requirements and return at once.
 */
export async function ensurePythonEnv(
  requirements: readonly string[] = [REQUIREMENTS],
  say: (line: string) => void = console.log,
): Promise<string> {
  const python = join(VENV_DIR, "bin", "python");
  const digest = createHash("sha256");
  for (const file of requirements) digest.update(await readFile(file));
  const wanted = digest.digest("hex");
  const have = existsSync(MARKER) ? (await readFile(MARKER, "utf8")).trim() : "";
  if (existsSync(python) && have === wanted) return python;

  say(`Preparing the kernel Python environment in ${VENV_DIR} (first run only, takes a minute or two)...`);
  if (!existsSync(python)) await exec("python3", ["-m", "venv", VENV_DIR]);
  await exec(python, [
    "-m",
    "pip",
    "install",
    "--quiet",
    "--disable-pip-version-check",
    ...requirements.flatMap((r) => ["-r", r]),
  ]);
  await writeFile(MARKER, `${wanted}\n`);
  say("Kernel Python environment ready.");
  return python;
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
