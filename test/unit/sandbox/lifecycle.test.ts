import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BackendUnavailableError,
  CapacityError,
  KernelStartingError,
  KernelStoppedError,
  NotFoundError,
} from "../../../lib/errors.ts";
import { sandbox } from "./harness.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("KernelLifecycle", { timeout: 10_000 }, () => {
  describe("start", () => {
    it("creates a kernel the first time, then returns the same one for that id", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();

      // Act
      const first = await lifecycle.start("alice", { kernelId: "k" });
      const second = await lifecycle.start("alice", { kernelId: "k" });

      // Assess
      assert.equal(first.created, true);
      assert.equal(first.kernel.state, "idle");
      assert.equal(second.created, false);
      assert.equal(second.kernel.createdAt, first.kernel.createdAt);
      assert.equal(backend.kernels.length, 1);
    });

    it("names the kernel with a UUID when the caller gives no id", async () => {
      // Prepare
      const { lifecycle } = sandbox();

      // Act
      const { kernel } = await lifecycle.start("alice", {});

      // Assess
      assert.match(kernel.kernelId, UUID);
    });

    it("starts the kernel with the caller's cwd and env under the operator's env", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();

      // Act
      await lifecycle.start("alice", { kernelId: "k", cwd: "/work/a", env: { SHARED: "caller", MINE: "1" } });

      // Assess
      assert.deepEqual(backend.kernels[0]?.spec, {
        owner: "alice",
        kernelId: "k",
        cwd: "/work/a",
        env: { OPERATOR_ONLY: "operator", SHARED: "operator", MINE: "1" },
      });
    });

    it("makes one backend kernel for two concurrent starts of one id", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      backend.startDelayMs = 100;

      // Act
      const outcomes = await Promise.all([
        lifecycle.start("alice", { kernelId: "k" }),
        lifecycle.start("alice", { kernelId: "k" }),
      ]);

      // Assess
      assert.equal(backend.kernels.length, 1);
      assert.deepEqual(outcomes.map((outcome) => outcome.created).sort(), [false, true]);
    });

    it("keeps each caller's kernels apart under the same id", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const bobs = await lifecycle.start("bob", { kernelId: "k" });

      // Assess
      assert.equal(bobs.created, true);
      assert.equal(backend.running().length, 2);
    });

    it("refuses a new kernel beyond the caller's limit with CapacityError and starts nothing", async () => {
      // Prepare
      const { lifecycle, backend, store } = sandbox({ settings: { maxKernelsPerCaller: 2 } });
      await lifecycle.start("alice", { kernelId: "a1" });
      await lifecycle.start("alice", { kernelId: "a2" });

      // Act
      const over = lifecycle.start("alice", { kernelId: "a3" });

      // Assess
      await assert.rejects(over, (error: unknown) => {
        assert.ok(error instanceof CapacityError);
        assert.match(error.message, /2 kernels.*DELETE/);
        assert.equal(error.retryAfterSeconds, 30);
        return true;
      });
      assert.equal(backend.kernels.length, 2);
      assert.equal(store.peek("alice", "a3"), undefined);
    });

    it("still returns a kernel the caller has when at the limit, and counts other callers apart", async () => {
      // Prepare
      const { lifecycle } = sandbox({ settings: { maxKernelsPerCaller: 1 } });
      await lifecycle.start("alice", { kernelId: "a1" });

      // Act
      const again = await lifecycle.start("alice", { kernelId: "a1" });
      const bobs = await lifecycle.start("bob", { kernelId: "b1" });

      // Assess
      assert.equal(again.created, false);
      assert.equal(bobs.created, true);
    });

    it("replaces a dead kernel with a fresh one that says restarted", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.kill("alice", "k");

      // Act
      const outcome = await lifecycle.start("alice", { kernelId: "k" });

      // Assess
      assert.equal(outcome.created, true);
      assert.equal(outcome.kernel.restarted, true);
      assert.equal(backend.kernelsOf("alice", "k").length, 2);
      assert.ok(backend.runningOf("alice", "k"));
    });

    it("takes over a start that stalled past its claim", async () => {
      // Prepare
      const { lifecycle, store, backend } = sandbox();
      const now = new Date().toISOString();
      store.put({
        owner: "alice",
        kernelId: "k",
        backend: "local",
        state: "starting",
        incarnation: "crashed-start",
        createdAt: now,
        lastActivityAt: now,
        startingUntil: Date.now() - 1,
      });

      // Act
      const outcome = await lifecycle.start("alice", { kernelId: "k" });

      // Assess
      assert.equal(outcome.created, true);
      assert.equal(outcome.kernel.restarted, undefined);
      assert.equal(backend.kernels.length, 1);
      assert.notEqual(store.peek("alice", "k")?.incarnation, "crashed-start");
    });

    it("answers KernelStartingError when another start is not done before the invocation must answer", async () => {
      // Prepare
      const { lifecycle, store, backend } = sandbox();
      const now = new Date().toISOString();
      store.put({
        owner: "alice",
        kernelId: "k",
        backend: "local",
        state: "starting",
        incarnation: "elsewhere",
        createdAt: now,
        lastActivityAt: now,
        startingUntil: Date.now() + 60_000,
      });

      // Act
      const started = lifecycle.start("alice", { kernelId: "k" }, { deadline: Date.now() + 1_200 });

      // Assess
      await assert.rejects(started, KernelStartingError);
      assert.equal(backend.kernels.length, 0);
    });

    it("forgets the record of a start the backend refused, so the next start tries afresh", async () => {
      // Prepare
      const { lifecycle, backend, store } = sandbox();
      backend.failNextStart(new BackendUnavailableError("no capacity"));

      // Act
      const refused = lifecycle.start("alice", { kernelId: "k" });

      // Assess
      await assert.rejects(refused, BackendUnavailableError);
      assert.equal(store.peek("alice", "k"), undefined);
      assert.equal((await lifecycle.start("alice", { kernelId: "k" })).created, true);
    });

    it("answers KernelStoppedError when the kernel is stopped while it starts, and leaves nothing running", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      backend.startDelayMs = 100;
      const starting = lifecycle.start("alice", { kernelId: "k" });
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Act
      await lifecycle.stop("alice", "k");

      // Assess
      await assert.rejects(starting, KernelStoppedError);
      assert.equal(backend.running().length, 0);
    });
  });

  describe("get", () => {
    it("shows the caller's kernel with no ref or address in it", async () => {
      // Prepare
      const { lifecycle } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const view = await lifecycle.get("alice", "k");

      // Assess
      assert.deepEqual(Object.keys(view).sort(), [
        "backend",
        "createdAt",
        "kernelId",
        "lastActivityAt",
        "state",
      ]);
      assert.equal(view.state, "idle");
    });

    it("answers NotFoundError for another caller's kernel", async () => {
      // Prepare
      const { lifecycle } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      const bobs = lifecycle.get("bob", "k");

      // Assess
      await assert.rejects(bobs, NotFoundError);
    });

    it("reports a kernel whose process died as dead, and marks its record so", async () => {
      // Prepare
      const { lifecycle, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.kill("alice", "k");

      // Act
      const view = await lifecycle.get("alice", "k");

      // Assess
      assert.equal(view.state, "dead");
      assert.equal(store.peek("alice", "k")?.state, "dead");
    });
  });

  describe("stop", () => {
    it("stops the kernel and forgets it, and a second stop succeeds too", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      await lifecycle.stop("alice", "k");
      await lifecycle.stop("alice", "k");

      // Assess
      assert.equal(backend.kernels[0]?.status, "stopped");
      await assert.rejects(lifecycle.get("alice", "k"), NotFoundError);
    });

    it("succeeds for a kernel that never existed", async () => {
      // Prepare
      const { lifecycle } = sandbox();

      // Act
      const stopped = lifecycle.stop("alice", "never");

      // Assess
      await assert.doesNotReject(stopped);
    });

    it("leaves another caller's kernel of the same id running", async () => {
      // Prepare
      const { lifecycle, backend } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });

      // Act
      await lifecycle.stop("bob", "k");

      // Assess
      assert.ok(backend.runningOf("alice", "k"));
      assert.equal((await lifecycle.get("alice", "k")).state, "idle");
    });
  });
});
