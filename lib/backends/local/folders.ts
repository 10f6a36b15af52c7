import { chown, lstat, rm } from "node:fs/promises";
import { logger } from "../../logger.ts";

/** The folders a local kernel was given, as its ref records them. */
export interface KernelFolders {
  runtimeDir: string;
  workDir: string;
  /** The work folder was made for the kernel (no caller `cwd`): it goes with the kernel. */
  ownsWorkDir: boolean;
  socketDir?: string | undefined;
  /** Who owned a caller's cwd before it was lent to a kernel running under a uid of its own. */
  cwdOwner?: { uid: number; gid: number; ino: number } | undefined;
}

/** Removes a kernel's folders and gives a lent cwd back to its owner. */
export async function removeKernelFolders(kernel: KernelFolders): Promise<void> {
  await rm(kernel.runtimeDir, { recursive: true, force: true });
  if (kernel.socketDir) await rm(kernel.socketDir, { recursive: true, force: true });
  if (kernel.ownsWorkDir) await rm(kernel.workDir, { recursive: true, force: true });
  else if (kernel.cwdOwner) {
    // Only the very folder that was lent: never through a symlink put in its place meanwhile.
    const now = await lstat(kernel.workDir).catch(() => undefined);
    if (!now?.isDirectory() || now.ino !== kernel.cwdOwner.ino) {
      logger.warn("the lent cwd was replaced; its owner is not restored", { cwd: kernel.workDir });
      return;
    }
    await chown(kernel.workDir, kernel.cwdOwner.uid, kernel.cwdOwner.gid).catch((cause) =>
      logger.warn("could not give the cwd back to its owner", { cwd: kernel.workDir, cause }),
    );
  }
}
