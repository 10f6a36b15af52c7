import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  KernelBusyError,
  KernelDeadError,
  KernelStoppedError,
  NotFoundError,
  PayloadTooLargeError,
  StoreUnavailableError,
  ValidationError,
} from "../../../lib/errors.ts";
import { KernelAccess } from "../../../lib/sandbox/kernel-access.ts";
import { KernelLifecycle } from "../../../lib/sandbox/lifecycle.ts";
import { KernelRuns } from "../../../lib/sandbox/runs.ts";
import { sandbox, testSettings } from "./harness.ts";

/** Waits until `check` holds, or fails after `ms`. */
async function eventually(check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("KernelRuns", { timeout: 10_000 }, () => {
  describe("run", () => {
    it("runs the code in the caller's kernel and gives back what it displayed", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const result = await runs.run("alice", "k", "1 + 1");

      // Assess
      assert.equal(result.status, "ok");
      assert.deepEqual(result.data, [{ "text/plain": "1 + 1" }]);
      assert.deepEqual(backend.runningOf("alice", "k")?.ran, ["1 + 1"]);
    });

    it("answers NotFoundError for another caller's kernel and runs nothing", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const bobs = runs.run("bob", "k", "secrets");

      // Assess
      await assert.rejects(bobs, NotFoundError);
      assert.deepEqual(backend.runningOf("alice", "k")?.ran, []);
    });

    it("waits for a kernel another run holds, then runs after it", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      const held = backend.pause();
      const first = runs.run("alice", "k", "first");
      await new Promise((resolve) => setTimeout(resolve, 20));
      let secondDone = false;
      const second = runs.run("alice", "k", "second").finally(() => {
        secondDone = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const whileHeld = { view: await lifecycle.get("alice", "k"), secondDone };

      // Act
      held.resume();
      const results = await Promise.all([first, second]);

      // Assess
      assert.equal(whileHeld.view.state, "busy");
      assert.equal(whileHeld.secondDone, false);
      assert.deepEqual(
        results.map((result) => result.status),
        ["ok", "ok"],
      );
      assert.deepEqual(backend.runningOf("alice", "k")?.ran, ["first", "second"]);
      assert.equal((await lifecycle.get("alice", "k")).state, "idle");
    });

    it("answers KernelBusyError when the kernel stays held past the busy wait, and sends nothing", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      const held = backend.pause();
      const first = runs.run("alice", "k", "first");
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Act
      const second = runs.run("alice", "k", "second", { busyWaitMs: 100 });

      // Assess
      await assert.rejects(second, KernelBusyError);
      held.resume();
      await first;
      assert.deepEqual(backend.runningOf("alice", "k")?.ran, ["first"]);
    });

    it("restarts a kernel that ignored the interrupt, and the result says so", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k", cwd: "/work/a", env: { MINE: "1" } });
      const stuck = backend.runningOf("alice", "k");
      backend.ignoreInterrupts("alice", "k");

      // Act
      const result = await runs.run("alice", "k", "while True: pass");

      // Assess
      assert.equal(result.status, "timeout");
      assert.equal(result.restarted, true);
      assert.equal(result.error?.ename, "TimeoutError");
      assert.match(result.error?.evalue ?? "", /did not respond to the interrupt, so it was restarted/);
      assert.equal(stuck?.status, "stopped");
      const fresh = backend.runningOf("alice", "k");
      assert.notEqual(fresh?.id, stuck?.id);
      assert.equal(fresh?.spec.cwd, "/work/a");
      assert.equal(fresh?.spec.env.MINE, "1");
      assert.equal((await runs.run("alice", "k", "2")).status, "ok");
    });

    it("answers before a slow restart ends when the deadline comes, saying a kernel is starting", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.ignoreInterrupts("alice", "k");
      backend.startDelayMs = 1_500;

      // Act
      const result = await runs.run("alice", "k", "while True: pass", { deadline: Date.now() + 1_500 });

      // Assess
      assert.equal(result.restarted, true);
      assert.match(result.error?.evalue ?? "", /a fresh kernel is starting in its place/);
      assert.equal((await lifecycle.get("alice", "k")).state, "starting");
      await eventually(async () => (await lifecycle.get("alice", "k")).state === "idle");
    });

    it("shuts a stuck kernel down and marks it dead when no replacement can be made", async () => {
      // Prepare
      const { lifecycle, runs, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      const stuck = backend.runningOf("alice", "k");
      backend.ignoreInterrupts("alice", "k");
      store.failNext("claim", new StoreUnavailableError("throttled"));

      // Act
      const result = await runs.run("alice", "k", "while True: pass");

      // Assess
      assert.equal(result.restarted, undefined);
      assert.match(result.error?.evalue ?? "", /was shut down/);
      assert.equal(stuck?.status, "stopped");
      assert.equal(store.peek("alice", "k")?.state, "dead");
    });

    it("answers KernelDeadError for a kernel that died, and marks it dead", async () => {
      // Prepare
      const { lifecycle, runs, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.kill("alice", "k");

      // Act
      const run = runs.run("alice", "k", "1");

      // Assess
      await assert.rejects(run, KernelDeadError);
      assert.equal(store.peek("alice", "k")?.state, "dead");
      await assert.rejects(runs.run("alice", "k", "1"), KernelDeadError);
    });

    it("answers KernelStoppedError, not dead, when the kernel is stopped during the run", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      const held = backend.pause();
      const run = runs.run("alice", "k", "long");
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Act
      await lifecycle.stop("alice", "k");
      held.resume();

      // Assess
      await assert.rejects(run, KernelStoppedError);
    });

    it("answers KernelStoppedError when the run ends before the stop has forgotten the kernel", async () => {
      // Prepare: the run notices its kernel gone the moment the backend kills it, while the stop
      // has yet to delete the record.
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      const held = backend.pause();
      const run = runs.run("alice", "k", "long");
      await new Promise((resolve) => setTimeout(resolve, 20));
      const kill = backend.stop.bind(backend);
      backend.stop = async (ref) => {
        backend.stop = kill;
        await kill(ref);
        held.resume();
        await run.catch(() => undefined);
      };

      // Act
      await lifecycle.stop("alice", "k");

      // Assess
      await assert.rejects(run, KernelStoppedError);
    });

    it("runs in the kernel another container put in place of the one this container remembers", async () => {
      // Prepare
      const { lifecycle, runs, backend, store } = sandbox();
      const other = new KernelAccess(store, backend, testSettings());
      await lifecycle.start("alice", { kernelId: "k" });
      await runs.run("alice", "k", "x = 'old'");
      const old = backend.runningOf("alice", "k");
      await new KernelLifecycle(other).stop("alice", "k");
      await new KernelLifecycle(other).start("alice", { kernelId: "k" });

      // Act
      const result = await runs.run("alice", "k", "'x' in globals()");

      // Assess
      assert.equal(result.status, "ok");
      assert.deepEqual(old?.ran, ["x = 'old'"]);
      assert.deepEqual(backend.runningOf("alice", "k")?.ran, ["'x' in globals()"]);
      assert.equal((await new KernelRuns(other).run("alice", "k", "again")).status, "ok");
    });

    it("cuts the code's timeout to fit inside the invocation's deadline", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      await runs.run("alice", "k", "cut", { timeoutMs: 5_000, deadline: Date.now() + 5_000 });
      await runs.run("alice", "k", "uncut", { timeoutMs: 1_000, deadline: Date.now() + 5_000 });

      // Assess
      const [cut, uncut] = backend.runningOf("alice", "k")?.options ?? [];
      // 5 s less the interrupt grace (0.1 s), the restart reserve (2 s) and the answer's (1 s).
      assert.ok(cut && cut.timeoutMs <= 1_900 && cut.timeoutMs > 1_500, `timeoutMs ${cut?.timeoutMs}`);
      assert.equal(uncut?.timeoutMs, 1_000);
    });

    it("tightens the per-entry output cap along with a tighter total", async () => {
      // Prepare
      const { lifecycle, runs, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      await runs.run("alice", "k", "1", { maxOutputBytes: 10_000 });

      // Assess
      const options = backend.runningOf("alice", "k")?.options[0];
      assert.equal(options?.maxOutputBytes, 10_000);
      assert.equal(options?.maxOutputEntryBytes, 10_000);
    });

    it("refuses code over the byte limit, counting UTF-8 bytes", async () => {
      // Prepare
      const { lifecycle, runs } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const run = runs.run("alice", "k", "é".repeat(501));

      // Assess
      await assert.rejects(run, PayloadTooLargeError);
    });

    it("refuses a timeout beyond the synchronous maximum and points to queued runs", async () => {
      // Prepare
      const { lifecycle, runs } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const sync = runs.run("alice", "k", "1", { timeoutMs: 25_001 });
      const queued = runs.run("alice", "k", "1", { timeoutMs: 60_001, maxTimeoutMs: 60_000 });

      // Assess
      await assert.rejects(sync, (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.match(error.message, /1 to 25000; run longer code with POST/);
        return true;
      });
      await assert.rejects(queued, (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.doesNotMatch(error.message, /POST/);
        return true;
      });
    });
  });
});
