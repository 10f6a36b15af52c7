import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KernelRecord } from "../../../lib/store/kernel-store.ts";
import { ago, sandbox } from "./harness.ts";

const HOUR = 60 * 60_000;

/** A record as another writer left it: a start of this backend, or a kernel of another backend. */
function record(change: Partial<KernelRecord> & Pick<KernelRecord, "kernelId">): KernelRecord {
  const now = new Date().toISOString();
  return {
    owner: "alice",
    backend: "local",
    state: "starting",
    incarnation: `incarnation-of-${change.kernelId}`,
    createdAt: now,
    lastActivityAt: now,
    ...change,
  };
}

describe("Housekeeping", { timeout: 10_000 }, () => {
  describe("recover", () => {
    it("keeps a live kernel and drops the lease the crashed process held", async () => {
      // Prepare
      const { lifecycle, runs, housekeeping, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      store.edit("alice", "k", { leaseId: "crashed-run", leaseUntil: Date.now() + HOUR });

      // Act
      const recovered = await housekeeping.recover();

      // Assess
      assert.deepEqual(recovered, { reattached: 1, cleaned: 0 });
      assert.equal(store.peek("alice", "k")?.leaseUntil, undefined);
      assert.equal((await runs.run("alice", "k", "1", { busyWaitMs: 0 })).status, "ok");
    });

    it("cleans up a kernel that died with the process", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.kill("alice", "k");

      // Act
      const recovered = await housekeeping.recover();

      // Assess
      assert.deepEqual(recovered, { reattached: 0, cleaned: 1 });
      assert.equal(store.peek("alice", "k"), undefined);
    });

    it("cleans up a stalled start and leaves one still within its claim", async () => {
      // Prepare
      const { housekeeping, store } = sandbox();
      store.put(record({ kernelId: "stalled", startingUntil: Date.now() - 1 }));
      store.put(record({ kernelId: "starting", startingUntil: Date.now() + HOUR }));

      // Act
      const recovered = await housekeeping.recover();

      // Assess
      assert.deepEqual(recovered, { reattached: 0, cleaned: 1 });
      assert.equal(store.peek("alice", "stalled"), undefined);
      assert.ok(store.peek("alice", "starting"));
    });

    it("leaves another backend's kernels alone", async () => {
      // Prepare
      const { housekeeping, store } = sandbox();
      store.put(record({ kernelId: "g", backend: "gateway", state: "ready", ref: { backend: "gateway" } }));

      // Act
      const recovered = await housekeeping.recover();

      // Assess
      assert.deepEqual(recovered, { reattached: 0, cleaned: 0 });
      assert.ok(store.peek("alice", "g"));
    });
  });

  describe("reap", () => {
    it("stops and forgets kernels unused for longer than the idle time, and only those", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "old" });
      await lifecycle.start("alice", { kernelId: "recent" });
      store.edit("alice", "old", { lastActivityAt: ago(2 * HOUR) });

      // Act
      const report = await housekeeping.reap(HOUR);

      // Assess
      assert.deepEqual(report, {
        idle: 1,
        dead: 0,
        forgotten: 0,
        stalled: 0,
        orphans: 0,
        poolRetired: 0,
        poolFilled: 0,
      });
      assert.equal(store.peek("alice", "old"), undefined);
      assert.equal(backend.kernelsOf("alice", "old")[0]?.status, "stopped");
      assert.ok(backend.runningOf("alice", "recent"));
    });

    it("never stops a kernel a run holds, however old its last activity", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      store.edit("alice", "k", {
        lastActivityAt: ago(2 * HOUR),
        leaseId: "run",
        leaseUntil: Date.now() + HOUR,
      });

      // Act
      const report = await housekeeping.reap(HOUR);

      // Assess
      assert.equal(report.idle, 0);
      assert.ok(backend.runningOf("alice", "k"));
    });

    it("marks a kernel found dead and keeps that record until it has been idle, then forgets it", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "k" });
      backend.kill("alice", "k");

      // Act
      const first = await housekeeping.reap(HOUR);
      const second = await housekeeping.reap(HOUR);
      const kept = store.peek("alice", "k")?.state;
      store.edit("alice", "k", { lastActivityAt: ago(2 * HOUR) });
      const third = await housekeeping.reap(HOUR);

      // Assess
      assert.equal(first.dead, 1);
      assert.equal(second.forgotten, 0);
      assert.equal(kept, "dead");
      assert.equal(third.forgotten, 1);
      assert.equal(store.peek("alice", "k"), undefined);
    });

    it("cleans up a start that stalled, stopping the kernel it had launched", async () => {
      // Prepare
      const { housekeeping, backend, store } = sandbox();
      const launched = await backend.start({ owner: "alice", kernelId: "k", env: {} });
      store.put(record({ kernelId: "k", ref: launched, startingUntil: Date.now() - 1 }));
      store.put(record({ kernelId: "fresh", startingUntil: Date.now() + HOUR }));

      // Act
      const report = await housekeeping.reap(HOUR);

      // Assess
      assert.equal(report.stalled, 1);
      assert.equal(store.peek("alice", "k"), undefined);
      assert.equal(backend.kernelsOf("alice", "k")[0]?.status, "stopped");
      assert.ok(store.peek("alice", "fresh"));
    });

    it("stops a kernel the backend runs that no record points at", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend } = sandbox({ backend: { inventory: true } });
      await lifecycle.start("alice", { kernelId: "recorded" });
      await backend.start({ owner: "alice", kernelId: "orphan", env: {} });

      // Act
      const report = await housekeeping.reap(HOUR, 0);

      // Assess
      assert.equal(report.orphans, 1);
      assert.equal(backend.kernelsOf("alice", "orphan")[0]?.status, "stopped");
      assert.ok(backend.runningOf("alice", "recorded"));
    });

    it("spares an unrecorded kernel younger than a start may take, as a start records its kernel last", async () => {
      // Prepare
      const { housekeeping, backend } = sandbox({ backend: { inventory: true } });
      await backend.start({ owner: "alice", kernelId: "being-started", env: {} });

      // Act
      const report = await housekeeping.reap(HOUR);

      // Assess
      assert.equal(report.orphans, 0);
      assert.ok(backend.runningOf("alice", "being-started"));
    });

    it("skips the orphan sweep while some record cannot be read, since its kernel would look orphaned", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox({ backend: { inventory: true } });
      await lifecycle.start("alice", { kernelId: "unreadable" });
      store.spoil("alice", "unreadable");

      // Act
      const report = await housekeeping.reap(HOUR, 0);

      // Assess
      assert.equal(report.orphans, 0);
      assert.ok(backend.runningOf("alice", "unreadable"));
    });

    it("leaves another backend's records alone", async () => {
      // Prepare
      const { housekeeping, store } = sandbox();
      store.put(record({ kernelId: "g", backend: "gateway", state: "dead", lastActivityAt: ago(2 * HOUR) }));

      // Act
      const report = await housekeeping.reap(HOUR);

      // Assess
      assert.equal(report.forgotten, 0);
      assert.ok(store.peek("alice", "g"));
    });
  });

  describe("stopAll", () => {
    it("stops every kernel of this backend, forgets their records and says how many", async () => {
      // Prepare
      const { lifecycle, housekeeping, backend, store } = sandbox();
      await lifecycle.start("alice", { kernelId: "a" });
      await lifecycle.start("bob", { kernelId: "b" });
      store.put(record({ kernelId: "g", backend: "gateway", state: "ready", ref: { backend: "gateway" } }));

      // Act
      const stopped = await housekeeping.stopAll();

      // Assess
      assert.equal(stopped, 2);
      assert.equal(backend.running().length, 0);
      assert.deepEqual(
        store.records().map((left) => left.kernelId),
        ["g"],
      );
    });
  });
});
