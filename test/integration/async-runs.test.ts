import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ApiClient } from "../support/api.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/**
 * Queued runs through the whole local API: HTTP → enqueue handler → in-process FIFO queue → the
 * same consumer Lambda runs → real kernel → run record in DynamoDB → HTTP.
 */
describe("queued runs under npm start", { timeout: 180_000 }, () => {
  let server: LocalApi;
  let api: ApiClient;

  before(async () => {
    server = await startLocalApi({
      PYBOX_MAX_RUN_TIMEOUT_MS: "2000",
      PYBOX_RUN_TIMEOUT_MS: "2000",
      PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS: "20000",
      PYBOX_MAX_ASYNC_RESULT_BYTES: "20000",
      PYBOX_INTERRUPT_GRACE_MS: "2000",
    });
    api = server.api;
    assert.equal((await api.start({ kernelId: "q" })).status, 201);
  });

  after(async () => {
    await server?.stop();
  });

  it("answers 202 queued at once, then the RunResult once the kernel is done", async () => {
    const queued = await api.enqueue("q", { code: "import time\ntime.sleep(0.5)\nprint(6 * 7)" });
    assert.equal(queued.status, 202);
    assert.equal(queued.body.status, "queued");
    assert.match(queued.body.runId, /^[0-9a-f-]{36}$/);
    const done = await api.waitForRun("q", queued.body.runId);
    assert.equal(done.status, "ok");
    assert.deepEqual(done.result?.data, [{ "text/plain": "42\n" }]);
    assert.ok(done.startedAt && done.finishedAt);
  });

  it("answers a long poll (waitMs) when the run ends, and an unfinished run as it stands without one", async () => {
    const queued = await api.enqueue("q", { code: "import time\ntime.sleep(1)\n'waited for'" });

    const now = await api.runStatus("q", queued.body.runId);
    const waited = await api.runStatus("q", queued.body.runId, 15_000);

    assert.ok(["queued", "running"].includes(now.body.status), now.text);
    assert.equal(waited.status, 200, waited.text);
    assert.equal(waited.body.status, "ok");
    assert.deepEqual(waited.body.result?.data, [{ "text/plain": "'waited for'" }]);
    for (const bad of ["20001", "-1", "soon"]) {
      const refused = await api.runStatus("q", queued.body.runId, bad);
      assert.equal(refused.status, 400, `${bad}: ${refused.text}`);
    }
  });

  it("runs a kernel's queued cells one at a time, in the order they were sent", async () => {
    await api.eval("q", "order = []");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await api.enqueue("q", { code: `import time\ntime.sleep(0.05)\norder.append(${i})` });
      ids.push(res.body.runId);
    }
    for (const id of ids) assert.equal((await api.waitForRun("q", id)).status, "ok");
    assert.equal(await api.eval("q", "order"), "[0, 1, 2, 3, 4]");
  });

  it("lets a queued run take longer than a synchronous one may", async () => {
    const sync = await api.run("q", "1", 5_000);
    assert.equal(sync.status, 400);
    const queued = await api.enqueue("q", { code: "import time\ntime.sleep(3)\n'slept'", timeoutMs: 5_000 });
    const done = await api.waitForRun("q", queued.body.runId);
    assert.equal(done.status, "ok");
    assert.deepEqual(done.result?.data, [{ "text/plain": "'slept'" }]);
  });

  it("interrupts a queued run at its timeout and keeps the kernel usable", async () => {
    await api.eval("q", "kept = 'yes'");
    const queued = await api.enqueue("q", { code: "import time\ntime.sleep(30)", timeoutMs: 500 });
    const done = await api.waitForRun("q", queued.body.runId);
    assert.equal(done.status, "timeout");
    assert.equal(done.result?.status, "timeout");
    assert.equal(await api.eval("q", "kept"), "'yes'");
  });

  it("stores a Python error as the run's result", async () => {
    const queued = await api.enqueue("q", { code: "print('before')\n1 / 0" });
    const done = await api.waitForRun("q", queued.body.runId);
    assert.equal(done.status, "error");
    assert.equal(done.result?.error?.ename, "ZeroDivisionError");
    assert.deepEqual(done.result?.data, [{ "text/plain": "before\n" }]);
  });

  it("cuts a result too big for the store and says so", async () => {
    const queued = await api.enqueue("q", { code: "print('x' * 100_000)" });
    const done = await api.waitForRun("q", queued.body.runId);
    assert.equal(done.status, "ok");
    assert.equal(done.result?.truncated, true);
    assert.ok(JSON.stringify(done.result).length <= 20_000);
    assert.equal(await api.eval("q", "1 + 1"), "2");
  });

  it("treats a repeated runId with the same code as the same run, executed once", async () => {
    await api.eval("q", "hits = 0");
    const body = { code: "hits += 1", runId: "retried-post" };
    const first = await api.enqueue("q", body);
    const second = await api.enqueue("q", body);
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(second.body.runId, "retried-post");
    await api.waitForRun("q", "retried-post");
    const third = await api.enqueue("q", body);
    assert.equal(third.body.status, "ok");
    assert.equal(await api.eval("q", "hits"), "1");
  });

  it("refuses a reused runId with other code (409) and queues nothing", async () => {
    await api.enqueue("q", { code: "reused = 1", runId: "reused" });
    const res = await api.enqueue("q", { code: "reused = 2", runId: "reused" });
    assert.equal(res.status, 409);
    assert.equal((res.body as unknown as { error: { code: string } }).error.code, "RUN_CONFLICT");
    await api.waitForRun("q", "reused");
    assert.equal(await api.eval("q", "reused"), "1");
  });

  it("keeps runs to their caller: another caller can neither read nor queue", async () => {
    const queued = await api.enqueue("q", { code: "'mine'" });
    const bob = api.as("bob");
    assert.equal((await bob.runStatus("q", queued.body.runId)).status, 404);
    assert.equal((await bob.enqueue("q", { code: "'theirs'" })).status, 404);
    assert.equal((await api.waitForRun("q", queued.body.runId)).status, "ok");
  });

  it("rejects bad input before queueing anything", async () => {
    assert.equal((await api.request("POST", "/kernels/q/runs", {})).status, 400);
    assert.equal((await api.enqueue("q", { code: "1", timeoutMs: 20_001 })).status, 400);
    assert.equal((await api.enqueue("q", { code: "1", runId: "no spaces" })).status, 400);
    assert.equal((await api.enqueue("q", { code: "x".repeat(300_000) })).status, 413);
    assert.equal((await api.enqueue("nope", { code: "1" })).status, 404);
    assert.equal((await api.runStatus("q", "never-queued")).status, 404);
  });
});

describe("queued runs across a dev server crash", { timeout: 120_000 }, () => {
  it("closes runs the crash lost as RUN_LOST at the next start, and says so", async () => {
    const first = await startLocalApi();
    try {
      await first.api.start({ kernelId: "c" });
      const running = await first.api.enqueue("c", {
        code: "import time\ntime.sleep(30)",
        timeoutMs: 60_000,
      });
      const waiting = await first.api.enqueue("c", { code: "'never'" });
      for (
        let i = 0;
        i < 100 && (await first.api.runStatus("c", running.body.runId)).body.status !== "running";
        i++
      ) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await first.stop({ signal: "SIGKILL", keepState: true });

      const second = await startLocalApi({}, first.stateDir);
      try {
        assert.match(second.output(), /Closed 2 queued run\(s\)/);
        for (const id of [running.body.runId, waiting.body.runId]) {
          const res = await second.api.runStatus("c", id);
          assert.equal(res.body.status, "error");
          assert.equal(res.body.error?.code, "RUN_LOST");
        }
      } finally {
        await second.stop();
      }
    } finally {
      await first.stop();
    }
  });
});
