import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** The per-caller kernel limit through the whole local API, with a limit of two. */
describe("kernels per caller", { timeout: 120_000 }, () => {
  let server: LocalApi;

  before(async () => {
    server = await startLocalApi({ PYBOX_MAX_KERNELS_PER_CALLER: "2" });
  });

  after(async () => {
    await server?.stop();
  });

  it("refuses a caller's kernel beyond the limit with 429, says how to free one, and starts nothing", async () => {
    const alice = server.api.as("alice");
    assert.equal((await alice.start({ kernelId: "a1" })).status, 201);
    assert.equal((await alice.start({ kernelId: "a2" })).status, 201);

    const over = await alice.start({ kernelId: "a3" });
    assert.equal(over.status, 429);
    assert.equal((over.body as { error: { code: string } }).error.code, "CAPACITY");
    assert.match((over.body as { error: { message: string } }).error.message, /2 kernels.*DELETE/);
    assert.ok(Number(over.headers.get("retry-after")) > 0);
    assert.equal((await alice.get("a3")).status, 404);
  });

  it("still returns a caller's existing kernel at the limit (get-or-create never counts twice)", async () => {
    assert.equal((await server.api.as("alice").start({ kernelId: "a1" })).status, 200);
  });

  it("counts each caller on its own", async () => {
    assert.equal((await server.api.as("bob").start({ kernelId: "b1" })).status, 201);
  });

  it("lets a caller start another once one is stopped", async () => {
    const alice = server.api.as("alice");
    assert.equal((await alice.stop("a2")).status, 204);
    assert.equal((await alice.start({ kernelId: "a3" })).status, 201);
  });
});
