import { access } from "node:fs/promises";

/** Whether a path exists (and is reachable), for the rig's build-once and look-here-first checks. */
export async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
