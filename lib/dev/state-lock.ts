import { randomUUID } from "node:crypto";
import { readFileSync, unlinkSync } from "node:fs";
import { link, mkdir, open, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { StateDirLockedError } from "../errors.ts";

/** The lock file inside a state folder: the PID of the server that holds it. */
export const LOCK_FILE = "server.pid";

/** A state folder this process holds. */
export interface StateLock {
  file: string;
  /** Removes the lock if it is still ours. Synchronous, so an `exit` handler can call it; idempotent. */
  release(): void;
}

/** Who this process is and how to tell a live process from a dead one; tests inject both. */
export interface LockOptions {
  pid?: number;
  isAlive?: (pid: number) => boolean;
}

/** Tries before giving up on a lock that keeps changing hands under us. */
const ATTEMPTS = 5;

/** Filesystems without hard links: there the lock file is created with `O_EXCL` instead. */
const NO_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/**
 * Takes `stateDir` for this process, so one `npm start` alone opens its embedded DynamoDB (a
 * second would find dynalite's LevelDB held and crash on it). The lock file is complete before it
 * appears (written aside, then hard-linked into place, which fails if one exists). A lock held by
 * a live process fails with {@link StateDirLockedError}; one left by a dead process (a `kill -9`,
 * a crash) is taken over.
 */
export async function lockStateDir(stateDir: string, options: LockOptions = {}): Promise<StateLock> {
  const pid = options.pid ?? process.pid;
  const isAlive = options.isAlive ?? processAlive;
  const file = join(stateDir, LOCK_FILE);
  await mkdir(stateDir, { recursive: true });
  const draft = join(stateDir, `.${LOCK_FILE}.${pid}.${randomUUID()}`);
  await writeFile(draft, `${pid}\n`);
  try {
    let holder: Holder | undefined;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (await place(draft, file, pid)) return held(file, pid);
      holder = await readHolder(file);
      if (!holder) continue;
      if (holder.pid !== undefined && holder.pid !== pid && isAlive(holder.pid)) {
        throw new StateDirLockedError(stateDir, holder.pid);
      }
      await removeStale(file, holder, stateDir);
    }
    throw new StateDirLockedError(stateDir, holder?.pid);
  } finally {
    await unlink(draft).catch(() => undefined);
  }
}

/** Puts the draft in place as the lock file; false when a lock file is there already. */
async function place(draft: string, file: string, pid: number): Promise<boolean> {
  try {
    await link(draft, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    if (code === "EEXIST") return false;
    if (!NO_LINKS.has(code)) throw error;
  }
  try {
    await writeFile(file, `${pid}\n`, { flag: "wx" });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

/** A lock file as found: the PID in it (undefined when unreadable) and its inode. */
interface Holder {
  pid: number | undefined;
  ino: number;
}

async function readHolder(file: string): Promise<Holder | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const { ino } = await handle.stat();
    const text = (await handle.readFile("utf8")).trim();
    return { pid: /^\d+$/.test(text) ? Number(text) : undefined, ino };
  } finally {
    await handle.close();
  }
}

/**
 * Removes a stale lock file, and only that one: it is moved aside first, and put back when what
 * was moved is not the file judged stale (another server took the folder in between).
 */
async function removeStale(file: string, stale: Holder, stateDir: string): Promise<void> {
  const aside = join(stateDir, `.${LOCK_FILE}.stale.${randomUUID()}`);
  try {
    await rename(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  if ((await stat(aside)).ino !== stale.ino) await link(aside, file).catch(() => undefined);
  await unlink(aside);
}

function held(file: string, pid: number): StateLock {
  return {
    file,
    release() {
      try {
        if (readFileSync(file, "utf8").trim() === String(pid)) unlinkSync(file);
      } catch {
        // Gone already, or the folder with it: nothing left to release.
      }
    },
  };
}

/** True when a process with that PID exists, ours or another user's. */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
