import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { ApiClient, ApiResponse } from "../support/api.ts";
import { type ClusterHarness, startClusterHarness } from "../support/cluster.ts";
import { waitFor } from "../support/local-kernels.ts";

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): { code: string; message: string } {
  return (res.body as { error: { code: string; message: string } }).error;
}

/** More failures than any test makes requests: "until lifted". */
const UNTIL_LIFTED = 10_000;

/**
 * The Kubernetes API double answering 5xx, or dropping watches, under the cluster backend. What a
 * caller sees: a start rides out failing reads and watches (it retries within its own deadline);
 * what cannot be done is a `503 BACKEND_UNAVAILABLE` with `Retry-After`, saying nothing of the API
 * server; a kernel the API cannot describe is not called dead, and its runs, which go straight to
 * the pod, go on; a stop the API refuses keeps the record, so a retry finishes it.
 */
describe("Kubernetes API faults", { timeout: 300_000 }, () => {
  let harness: ClusterHarness;
  let api: ApiClient;

  function assertUnavailable(res: ApiResponse<unknown>): void {
    assert.equal(res.status, 503, res.text);
    assert.equal(errorOf(res).code, "BACKEND_UNAVAILABLE");
    assert.match(res.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
    assert.ok(!res.text.includes(harness.kube.url), res.text);
    assert.doesNotMatch(res.text, /127\.0\.0\.1|InternalError|ServiceUnavailable|at .+:\d+/);
  }

  /** The `Kernel` resources of one caller's kernel id, as the API server holds them. */
  const resourcesNamed = (fragment: string) =>
    harness.kube.store.list("kernels").filter((k) => k.metadata.name.includes(fragment));

  before(async () => {
    // Kernels come up over a second or so, so a start's watch is open long enough to be cut.
    harness = await startClusterHarness({ controller: { maxDelayMs: 1_000, reportPending: true } });
    api = harness.server.api.as("alice");
  });

  afterEach(() => {
    harness.kube.failNext(0, 500);
  });

  after(async () => {
    await harness?.stop();
  });

  describe("starting", () => {
    it("rides out watches the API server answers with 500", async () => {
      // Prepare
      harness.kube.failNext(3, 500, { when: (r) => r.watch });

      // Act
      const res = await api.start({ kernelId: "watch-500" });

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.ok(harness.kube.requests.some((r) => r.search.includes("watch") && r.status === 500));
      assert.equal(await api.eval("watch-500", "6 * 7"), "42");
      assert.equal((await api.stop("watch-500")).status, 204);
    });

    it("rides out watches dropped again and again", async () => {
      // Prepare
      let dropped = 0;
      let done = false;
      const starting = api.start({ kernelId: "watch-dropped" }).finally(() => {
        done = true;
      });

      // Act
      while (!done && dropped < 5) {
        if (await waitFor(() => done || harness.kube.openWatches() > 0, 5_000)) {
          if (done) break;
          harness.kube.dropWatches();
          dropped++;
        }
      }
      const res = await starting;

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.ok(dropped >= 1, "at least one watch was cut under the start");
      assert.equal(await api.eval("watch-dropped", "6 * 7"), "42");
      assert.equal((await api.stop("watch-dropped")).status, 204);
    });

    it("rides out reads of the new kernel the API server answers with 503", async () => {
      // Prepare
      harness.kube.failNext(2, 503, {
        when: (r) => r.method === "GET" && !r.watch && /\/kernels\/[^/]+$/.test(r.path),
      });

      // Act
      const res = await api.start({ kernelId: "read-503" });

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.equal(await api.eval("read-503", "6 * 7"), "42");
      assert.equal((await api.stop("read-503")).status, 204);
    });

    it("answers 503 when the API server keeps failing, and records and leaves nothing", async () => {
      // Prepare
      harness.kube.failNext(UNTIL_LIFTED, 500);

      // Act
      const res = await api.start({ kernelId: "api-down" });

      // Assess
      assertUnavailable(res);
      harness.kube.failNext(0, 500);
      assert.equal((await api.get("api-down")).status, 404, "nothing recorded");
      assert.equal(resourcesNamed("api-down").length, 0);
    });
  });

  describe("a running kernel", () => {
    before(async () => {
      assert.equal((await api.start({ kernelId: "steady" })).status, 201);
      await api.run("steady", "x = 1");
    });

    it("answers 503 for a kernel the API server cannot read, does not call it dead, and runs on meanwhile", async () => {
      // Prepare
      harness.kube.failNext(UNTIL_LIFTED, 503, { when: (r) => r.method === "GET" });

      // Act
      const get = await api.get("steady");
      const run = await api.run("steady", "x += 1\nx");

      // Assess
      assertUnavailable(get);
      assert.equal(run.status, 200, run.text);
      assert.deepEqual(run.body.data, [{ "text/plain": "2" }], "runs go straight to the pod");
      harness.kube.failNext(0, 500);
      assert.equal((await api.get("steady")).body.state, "idle", "nothing was marked dead");
    });

    it("keeps the record of a kernel whose delete the API server refuses, and a retried stop removes it", async () => {
      // Prepare
      harness.kube.failNext(UNTIL_LIFTED, 500, { when: (r) => r.method === "DELETE" });
      const [resource] = harness.kube.store
        .list("kernels")
        .filter((k) => k.metadata.labels?.["jupyter.org/kernel-id"] !== undefined);
      assert.ok(resource);

      // Act
      const refused = await api.stop("steady");
      harness.kube.failNext(0, 500);
      const kept = await api.get("steady");
      const retried = await api.stop("steady");

      // Assess
      assertUnavailable(refused);
      assert.equal(kept.status, 200, "the record is kept until the resource is really gone");
      assert.equal(retried.status, 204, retried.text);
      assert.equal((await api.get("steady")).status, 404);
      assert.equal(harness.kube.store.list("kernels").length, 0, "the Kernel resource was deleted");
    });
  });
});
