import { chmod, cp, mkdir, readdir } from "node:fs/promises";
import { basename, join } from "node:path";
import { ConfigError } from "../../errors.ts";

/** The folders IPython makes in the profile it starts with, made here so that it need not. */
const PROFILE_FOLDERS = [
  ["startup", 0o755],
  ["log", 0o755],
  ["pid", 0o700],
  ["security", 0o700],
] as const;

/**
 * A kernel's own copy of the operator's IPython profile, in its IPython folder. IPython writes into
 * the profile it starts with, and with one shared profile a kernel could change what every later
 * kernel runs at start; a copy costs a millisecond. The copy is the server's and readable by all,
 * so a kernel under a uid of its own reads it and cannot change it; its folders are made here.
 */
export async function kernelProfile(source: string, runtimeDir: string): Promise<string> {
  const target = join(runtimeDir, "ipython", "profile_pybox");
  await cp(source, target, { recursive: true, filter: (path) => basename(path) !== "__pycache__" }).catch(
    (cause: NodeJS.ErrnoException) => {
      if (cause.code !== "ENOENT" && cause.code !== "ENOTDIR") throw cause;
      throw new ConfigError(`the kernel profile ${source} is not a folder (PYBOX_KERNEL_PROFILE_DIR)`, {
        cause,
      });
    },
  );
  for (const entry of await readdir(target, { recursive: true, withFileTypes: true })) {
    if (entry.isSymbolicLink()) continue;
    await chmod(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o755 : 0o644);
  }
  for (const [name, mode] of PROFILE_FOLDERS) {
    await mkdir(join(target, name)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
    await chmod(join(target, name), mode);
  }
  await chmod(target, 0o755);
  return target;
}
