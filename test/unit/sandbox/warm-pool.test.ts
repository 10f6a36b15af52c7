import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ValidationError } from "../../../lib/errors.ts";
import { WarmPool } from "../../../lib/sandbox/warm-pool.ts";
import { sandbox, testSettings } from "./harness.ts";

/** The variables the adoption request put into a fake kernel, decoded from its code. */
function adoptedEnv(code: string): Record<string, string> {
  const encoded = /b64decode\(\\"([A-Za-z0-9+/=]+)\\"\)/.exec(code)?.[1];
  assert.ok(encoded, `not an adoption request: ${code}`);
  return JSON.parse(Buffer.from(encoded, "base64").toString()) as Record<string, string>;
}

/** A sandbox with a pool of `size`, filled. */
async function warmed(size: number, options: Parameters<typeof sandbox>[0] = {}) {
  const box = sandbox({ ...options, pool: { size }, backend: { pooling: true, ...options.backend } });
  assert.equal(await box.pool?.fill(), size);
  return box;
}

describe("WarmPool", { timeout: 10_000 }, () => {
  it("hands a pooled kernel to a start: no new kernel, the caller's variables adopted, a refill asked for", async () => {
    // Prepare
    const { lifecycle, backend, pools, refills, store } = await warmed(2);
    const pooled = backend.kernels.map((kernel) => kernel.id);

    // Act
    const outcome = await lifecycle.start("alice", { kernelId: "k", env: { MY_VAR: "1", SHARED: "caller" } });

    // Assess
    assert.equal(outcome.created, true);
    assert.equal(backend.kernels.length, 2, "a kernel was started cold");
    const [first] = backend.kernels;
    assert.equal(store.peek("alice", "k")?.ref?.id, pooled[0], "the oldest pooled kernel is taken");
    assert.deepEqual(first?.spec.env, { OPERATOR_ONLY: "operator", SHARED: "operator" });
    // Set up once, in the pool; then adopted, and not set up again (its folder did not change).
    const [setUp, adoption, ...more] = first?.helpers ?? [];
    assert.match(setUp?.code ?? "", /_pybox_files/);
    assert.deepEqual(more, []);
    assert.ok(adoption);
    // The operator's SHARED wins, as in a cold start; the pooled kernel has it since its start.
    assert.deepEqual(adoptedEnv(adoption.code), { MY_VAR: "1", PYBOX_FAKE_OWNER: "alice" });
    assert.equal((await pools.list("fake")).length, 1);
    assert.equal(refills.length, 1);
  });

  it("gives two concurrent starts different kernels, the second cold when the pool had one", async () => {
    // Prepare
    const { lifecycle, backend, store } = await warmed(1);

    // Act
    await Promise.all([
      lifecycle.start("alice", { kernelId: "a" }),
      lifecycle.start("bob", { kernelId: "b" }),
    ]);

    // Assess
    const a = store.peek("alice", "a")?.ref?.id;
    const b = store.peek("bob", "b")?.ref?.id;
    assert.ok(a && b);
    assert.notEqual(a, b);
    assert.equal(backend.kernels.length, 2);
  });

  it("starts cold when the pool is empty, and asks for a refill", async () => {
    // Prepare
    const { lifecycle, backend, refills, store } = sandbox({ pool: { size: 2 }, backend: { pooling: true } });

    // Act
    await lifecycle.start("alice", { kernelId: "k", env: { MY_VAR: "1" } });

    // Assess
    assert.equal(backend.kernels.length, 1);
    assert.equal(backend.kernels[0]?.spec.owner, "alice");
    assert.equal(backend.kernels[0]?.spec.env.MY_VAR, "1");
    assert.equal(store.peek("alice", "k")?.state, "ready");
    assert.equal(refills.length, 1);
  });

  for (const [why, request] of [
    ["a variable only a process start reads", { kernelId: "k", env: { LC_ALL: "de_DE.UTF-8" } }],
    ["a cwd the backend fixes at start", { kernelId: "k", cwd: "/work/alice" }],
  ] as const) {
    it(`starts cold, leaving the pool alone, for ${why}`, async () => {
      // Prepare
      const { lifecycle, backend, pools, refills } = await warmed(1);

      // Act
      await lifecycle.start("alice", request);

      // Assess
      assert.equal(backend.kernels.length, 2);
      assert.equal(backend.kernels[1]?.spec.owner, "alice");
      assert.equal((await pools.list("fake")).length, 1);
      assert.equal(refills.length, 0);
    });
  }

  it("stops a pooled kernel that died and hands over the next", async () => {
    // Prepare
    const { lifecycle, backend, store } = await warmed(2);
    const [dead, alive] = backend.kernels;
    assert.ok(dead && alive);
    dead.status = "dead";

    // Act
    await lifecycle.start("alice", { kernelId: "k" });

    // Assess
    assert.equal(store.peek("alice", "k")?.ref?.id, alive.id);
    assert.equal(backend.kernels.length, 2);
  });

  it("answers a caller's mistake found at hand-over with that kernel alone, not the whole pool", async () => {
    // Prepare
    const { lifecycle, backend, pools, store } = await warmed(3);
    backend.answerHelper = (_kernel, request) => {
      if (request.code.includes("_pybox_adopt")) throw new ValidationError("cwd '/nope' does not exist");
      return null;
    };

    // Act
    const refused = await lifecycle.start("alice", { kernelId: "k" }).catch((error: unknown) => error);

    // Assess
    assert.ok(refused instanceof ValidationError);
    assert.equal((await pools.list("fake")).length, 2);
    assert.equal(backend.running().length, 2);
    assert.equal(store.peek("alice", "k"), undefined);
  });

  it("starts cold when the pool's store fails, never failing the start for it", async () => {
    // Prepare
    const { lifecycle, backend, pools, store } = await warmed(1);
    pools.claim = async () => {
      throw new Error("the pool store is unreachable");
    };

    // Act
    await lifecycle.start("alice", { kernelId: "k" });

    // Assess
    assert.equal(store.peek("alice", "k")?.state, "ready");
    assert.equal(backend.kernels.length, 2);
  });

  describe("the reaper's pass", () => {
    it("retires kernels too old, dead or beyond the size, and fills up again", async () => {
      // Prepare
      const { pool, pools, backend } = await warmed(3);
      const [old, dead] = await pools.list("fake");
      assert.ok(old && dead && pool);
      pools.age(old.slot, 2 * 3_600_000);
      const deadKernel = backend.kernels.find((kernel) => kernel.id === dead.ref.id);
      if (deadKernel) deadKernel.status = "dead";

      // Act
      const report = await pool.tend();

      // Assess
      assert.deepEqual(report, { retired: 2, filled: 2 });
      assert.equal((await pools.list("fake")).length, 3);
      assert.equal(backend.kernels.find((kernel) => kernel.id === old.ref.id)?.status, "stopped");
      assert.equal(backend.running().length, 3);
    });

    it("leaves pooled kernels to the pool: the orphan sweep does not stop them", async () => {
      // Prepare
      const { housekeeping, backend } = await warmed(2, { backend: { inventory: true } });

      // Act
      const report = await housekeeping.reap(3_600_000, 0);

      // Assess
      assert.equal(report.orphans, 0);
      assert.equal(backend.running().length, 2);
    });

    it("empties a pool whose size went to zero", async () => {
      // Prepare
      const first = await warmed(2);
      const shrunk = new WarmPool(
        first.pools,
        first.backend,
        { pool: { size: 0, maxAgeMs: 3_600_000 }, operatorEnv: testSettings().operatorEnv },
        async () => {},
      );

      // Act
      const report = await shrunk.tend();

      // Assess
      assert.deepEqual(report, { retired: 2, filled: 0 });
      assert.equal(first.backend.running().length, 0);
    });
  });

  it("is drained by stopAll, which counts callers' kernels only", async () => {
    // Prepare
    const { housekeeping, lifecycle, backend, pools } = await warmed(2);
    await lifecycle.start("alice", { kernelId: "k" });

    // Act
    const stopped = await housekeeping.stopAll();

    // Assess
    assert.equal(stopped, 1);
    assert.equal(backend.running().length, 0);
    assert.equal((await pools.list("fake")).length, 0);
  });
});
