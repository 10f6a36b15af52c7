import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { LOCK_FILE, lockStateDir } from "../../../lib/dev/state-lock.ts";
import { StateDirLockedError } from "../../../lib/errors.ts";

describe("state-lock", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "pybox-lock-test-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("lockStateDir", () => {
    it("writes this process's PID into <stateDir>/server.pid, making the folder if need be", async () => {
      // Prepare
      const stateDir = join(dir, "state");

      // Act
      const lock = await lockStateDir(stateDir, { pid: 4242 });

      // Assess
      assert.equal(lock.file, join(stateDir, LOCK_FILE));
      assert.equal(await readFile(lock.file, "utf8"), "4242\n");
      assert.deepEqual(await readdir(stateDir), [LOCK_FILE], "no draft left behind");
    });

    it("refuses a folder held by a live process, naming its PID and PYBOX_STATE_DIR", async () => {
      // Prepare
      await lockStateDir(dir, { pid: 4242 });

      // Act
      const taking = lockStateDir(dir, { pid: 5151, isAlive: (pid) => pid === 4242 });

      // Assess
      await assert.rejects(taking, (error: unknown) => {
        assert.ok(error instanceof StateDirLockedError);
        assert.equal(error.pid, 4242);
        assert.equal(error.stateDir, dir);
        assert.match(error.message, new RegExp(`^the state directory ${dir} is in use by process 4242 `));
        assert.match(error.message, /another `npm start`\?.*PYBOX_STATE_DIR=/);
        return true;
      });
      assert.equal(await readFile(join(dir, LOCK_FILE), "utf8"), "4242\n", "the holder keeps it");
      assert.deepEqual(await readdir(dir), [LOCK_FILE]);
    });

    it("takes over a lock left by a dead process", async () => {
      // Prepare
      await writeFile(join(dir, LOCK_FILE), "4242\n");

      // Act
      const lock = await lockStateDir(dir, { pid: 5151, isAlive: () => false });

      // Assess
      assert.equal(await readFile(lock.file, "utf8"), "5151\n");
      assert.deepEqual(await readdir(dir), [LOCK_FILE]);
    });

    it("takes over a lock file that holds no PID, and one with its own PID (a reused one)", async () => {
      // Prepare
      const alive = () => true;
      await writeFile(join(dir, LOCK_FILE), "");

      // Act
      const first = await lockStateDir(dir, { pid: 5151, isAlive: alive });
      const second = await lockStateDir(dir, { pid: 5151, isAlive: alive });

      // Assess
      assert.equal(await readFile(first.file, "utf8"), "5151\n");
      assert.equal(second.file, first.file);
    });

    it("lets exactly one of several concurrent servers have the folder", async () => {
      // Prepare
      const pids = [101, 102, 103, 104, 105];
      const alive = (pid: number) => pids.includes(pid);

      // Act
      const outcomes = await Promise.allSettled(
        pids.map((pid) => lockStateDir(dir, { pid, isAlive: alive })),
      );

      // Assess
      const won = outcomes.filter((outcome) => outcome.status === "fulfilled");
      assert.equal(won.length, 1);
      const holder = Number(await readFile(join(dir, LOCK_FILE), "utf8"));
      for (const outcome of outcomes) {
        if (outcome.status === "rejected") assert.equal((outcome.reason as StateDirLockedError).pid, holder);
      }
    });
  });

  describe("release", () => {
    it("removes the lock, after which another server takes the folder", async () => {
      // Prepare
      const lock = await lockStateDir(dir, { pid: 4242 });

      // Act
      lock.release();
      lock.release();
      const next = await lockStateDir(dir, { pid: 5151, isAlive: () => true });

      // Assess
      assert.equal(await readFile(next.file, "utf8"), "5151\n");
    });

    it("leaves a lock that another server has taken over since", async () => {
      // Prepare
      const stale = await lockStateDir(dir, { pid: 4242 });
      await lockStateDir(dir, { pid: 5151, isAlive: (pid) => pid === 5151 });

      // Act
      stale.release();

      // Assess
      assert.equal(await readFile(join(dir, LOCK_FILE), "utf8"), "5151\n");
    });
  });
});
