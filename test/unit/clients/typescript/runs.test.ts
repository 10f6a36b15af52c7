import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { PyboxClient, PyboxError } from "../../../../clients/typescript/src/index.ts";
import { type HttpDouble, kernelView, runResult, serve } from "./http-double.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let server: HttpDouble | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** The JSON body the double received in request `index`. */
function bodyOf(index: number): unknown {
  return JSON.parse(server?.requests[index]?.body.toString("utf8") ?? "null");
}

/** A queued run's view, as `POST …/runs` and `GET …/runs/{runId}` answer it. */
function runView(runId: string, status: string, extra: Record<string, unknown> = {}) {
  return { runId, kernelId: "k1", status, createdAt: new Date().toISOString(), ...extra };
}

describe("runs", () => {
  it("runs up to the sync limit with one POST …/run, sending the timeout only when given", async () => {
    server = await serve(() => ({ status: 200, json: runResult() }));
    const client = new PyboxClient({ baseUrl: server.url });

    await client.run("k1", "6 * 7");
    await client.run("k1", "6 * 7", { timeoutMs: 20_000 });

    assert.deepEqual(
      server.requests.map((request) => `${request.method} ${request.url}`),
      ["POST /kernels/k1/run", "POST /kernels/k1/run"],
    );
    assert.deepEqual(bodyOf(0), { code: "6 * 7" });
    assert.deepEqual(bodyOf(1), { code: "6 * 7", timeoutMs: 20_000 });
  });

  it("queues a run whose timeout is over the sync limit and polls it to its result", async () => {
    let polls = 0;
    server = await serve((request) => {
      if (request.method === "POST") {
        const { runId } = JSON.parse(request.body.toString("utf8")) as { runId: string };
        return { status: 202, json: runView(runId, "queued") };
      }
      const runId = new URL(request.url, "http://x").pathname.split("/").at(-1) ?? "";
      polls += 1;
      return polls < 3
        ? { status: 200, json: runView(runId, polls === 1 ? "queued" : "running") }
        : { status: 200, json: runView(runId, "ok", { result: runResult("slept") }) };
    });
    const client = new PyboxClient({ baseUrl: server.url, syncRunLimitMs: 1_000 });

    const result = await client.run("k1", "import time; time.sleep(2)", { timeoutMs: 5_000 });

    assert.equal(result.data[0]?.["text/plain"], "slept");
    const submitted = bodyOf(0) as { code: string; timeoutMs: number; runId: string };
    assert.equal(server.requests[0]?.url, "/kernels/k1/runs");
    assert.equal(submitted.timeoutMs, 5_000);
    assert.match(submitted.runId, UUID);
    // Each read asks the service to wait for the end (a long poll); this service answers at once,
    // so the client backs off between reads, as with a service without long polls.
    assert.deepEqual(
      server.requests.slice(1).map((request) => `${request.method} ${request.url}`),
      Array(3).fill(`GET /kernels/k1/runs/${submitted.runId}?waitMs=20000`),
    );
  });

  it("asks the service to wait for the run's end, and needs one read when the answer is the end", async () => {
    server = await serve(async (request) => {
      if (request.method === "POST") {
        const { runId } = JSON.parse(request.body.toString("utf8")) as { runId: string };
        return { status: 202, json: runView(runId, "queued") };
      }
      const runId = new URL(request.url, "http://x").pathname.split("/").at(-1) ?? "";
      return { status: 200, json: runView(runId, "ok", { result: runResult("waited") }) };
    });
    const client = new PyboxClient({ baseUrl: server.url, syncRunLimitMs: 1_000 });

    const result = await client.run("k1", "1", { timeoutMs: 5_000 });

    assert.equal(result.data[0]?.["text/plain"], "waited");
    assert.equal(server.requests.length, 2);
    assert.match(server.requests[1]?.url ?? "", /\?waitMs=20000$/);
  });

  it("reports a queued run that ended without a result by the service's reason", async () => {
    server = await serve(() => ({
      status: 200,
      json: runView("r1", "error", {
        error: { code: "KERNEL_DEAD", message: "the kernel died during the run" },
      }),
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    await assert.rejects(client.waitForRun("k1", "r1"), (error: unknown) => {
      assert.ok(error instanceof PyboxError);
      assert.equal(error.code, "KERNEL_DEAD");
      assert.equal(error.message, "the kernel died during the run");
      return true;
    });
  });

  it("gives up waiting with WAIT_TIMEOUT, and stops at once when aborted", async () => {
    server = await serve(() => ({ status: 200, json: runView("r1", "running") }));
    const client = new PyboxClient({ baseUrl: server.url });

    await assert.rejects(client.waitForRun("k1", "r1", { timeoutMs: 200, pollMs: 50 }), {
      code: "WAIT_TIMEOUT",
    });
    await assert.rejects(client.waitForRun("k1", "r1", { signal: AbortSignal.timeout(100) }), {
      name: "TimeoutError",
    });
  });

  it("queues with the caller's runId, or a UUID of the client's, so a resent submit is the same run", async () => {
    server = await serve((request) => {
      const { runId } = JSON.parse(request.body.toString("utf8")) as { runId: string };
      return { status: 202, json: runView(runId, "queued") };
    });
    const client = new PyboxClient({ baseUrl: server.url });

    const mine = await client.runAsync("k1", "1", { runId: "job-1" });
    const generated = await client.runAsync("k1", "1");

    assert.equal(mine.runId, "job-1");
    assert.match(generated.runId, UUID);
    assert.deepEqual(bodyOf(0), { code: "1", runId: "job-1" });
  });

  it("starts with the client's own kernel id when none is given, and says whether it made the kernel", async () => {
    server = await serve((request, index) => {
      const { kernelId } = JSON.parse(request.body.toString("utf8")) as { kernelId: string };
      return { status: index === 0 ? 201 : 200, json: kernelView(kernelId) };
    });
    const client = new PyboxClient({ baseUrl: server.url });

    const made = await client.start({ env: { MODE: "test" } });
    const found = await client.start({ kernelId: made.kernelId });

    assert.match(made.kernelId, UUID);
    assert.equal(made.created, true);
    assert.equal(found.created, false);
    assert.deepEqual(bodyOf(0), { env: { MODE: "test" }, kernelId: made.kernelId });
  });

  it("refuses a timeout that is not a positive number before sending anything", async () => {
    const client = new PyboxClient({ baseUrl: "http://127.0.0.1:9" });

    await assert.rejects(client.run("k1", "1", { timeoutMs: 0 }), RangeError);
    await assert.rejects(client.run("k1", "1", { timeoutMs: Number.NaN }), RangeError);
  });
});
