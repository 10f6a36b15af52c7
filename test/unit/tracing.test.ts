import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as z from "zod";
import { KernelDiedError } from "../../lib/errors.ts";
import { tracedBackend } from "../../lib/tracing.ts";
import { FakeBackend } from "../support/fakes/backend.ts";

describe("tracedBackend", () => {
  it("is the same backend: calls, answers, errors, pooling and inventory pass through (no segment outside Lambda)", async () => {
    const inner = new FakeBackend({ pooling: true, inventory: true });
    const traced = tracedBackend(inner);

    const ref = await traced.start({ owner: "alice", kernelId: "k", env: {} });
    const result = await traced.run(ref, "1+1", {
      timeoutMs: 1_000,
      interruptGraceMs: 100,
      maxOutputBytes: 1_000,
      maxOutputEntryBytes: 1_000,
    });
    await traced.pooling?.adopt(ref, { owner: "alice", kernelId: "k", env: { A: "1" } });
    await traced.stop(ref);

    assert.deepEqual(result.data, [{ "text/plain": "1+1" }]);
    assert.equal(traced.name, inner.name);
    assert.equal(traced.pooling?.key, "fake");
    assert.equal(traced.inventory, inner.inventory);
    assert.equal(await traced.isAlive(ref), false);
    await assert.rejects(
      traced.helper(ref, { code: "", expression: "None", schema: z.null(), timeoutMs: 1 }),
      KernelDiedError,
    );
  });
});
