import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import type { ApiClient, ApiResponse } from "../support/api.ts";
import { type RunningGateway, startGateway } from "../support/gateway.ts";
import {
  type HttpFaultProxy,
  type SeenHttpRequest,
  startHttpFaultProxy,
} from "../support/http-fault-proxy.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { waitFor } from "../support/local-kernels.ts";

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): { code: string; message: string } {
  return (res.body as { error: { code: string; message: string } }).error;
}

/** Bound on one REST call to the gateway in these tests (`PYBOX_GATEWAY_REQUEST_TIMEOUT_MS`). */
const REQUEST_TIMEOUT_MS = 2_000;
/** Bound on one start (`PYBOX_START_TIMEOUT_MS`). */
const START_TIMEOUT_MS = 10_000;

const isStart = (r: SeenHttpRequest) => r.method === "POST" && r.path === "/api/kernels";
const isModelRead = (r: SeenHttpRequest) =>
  r.method === "GET" && !r.upgrade && /^\/api\/kernels\/[^/]+$/.test(r.path);

/**
 * A real Enterprise Gateway behind a proxy double that makes it fail, slow or unreachable. What a
 * caller sees: `503 BACKEND_UNAVAILABLE` (with `Retry-After`) for a gateway that cannot answer, `502
 * BACKEND_ERROR` for one that answers wrongly, `502 RUN_OUTCOME_UNKNOWN` (no `Retry-After`) for one
 * lost after the code went out, neither carrying the gateway's address, token or
 * traceback; no record of a kernel that was not made, no live kernel called dead, and no kernel
 * left on the gateway by a start that gave up.
 */
describe("gateway faults", { timeout: 600_000 }, () => {
  let gateway: RunningGateway;
  let proxy: HttpFaultProxy;
  let server: LocalApi;
  let api: ApiClient;

  /** The gateway's own list of its kernels, asked directly (not through the proxy). */
  async function gatewayKernels(): Promise<string[]> {
    const res = await fetch(`${gateway.url}/api/kernels`, {
      headers: { Authorization: `token ${gateway.token}` },
    });
    assert.equal(res.status, 200, "the gateway lists its kernels (list_kernels)");
    return ((await res.json()) as Array<{ id: string }>).map((k) => k.id);
  }

  /** Asserts an answer says nothing of where the gateway is, how we log in, or what it printed. */
  function assertNothingLeaked(res: ApiResponse<unknown>): void {
    for (const secret of [gateway.token, gateway.url, proxy.url, "127.0.0.1"]) {
      assert.ok(!res.text.includes(secret), `the answer leaks ${secret}: ${res.text}`);
    }
    assert.doesNotMatch(res.text, /Traceback|File "|\.py", line|at .+:\d+/);
  }

  function assertUnavailable(res: ApiResponse<unknown>): void {
    assert.equal(res.status, 503, res.text);
    assert.equal(errorOf(res).code, "BACKEND_UNAVAILABLE");
    assert.match(res.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
    assertNothingLeaked(res);
  }

  before(async () => {
    gateway = await startGateway("enterprise", ["--EnterpriseGatewayApp.list_kernels=True"]);
    try {
      proxy = await startHttpFaultProxy(gateway.url);
      server = await startLocalApi({
        PYBOX_BACKEND: "gateway",
        PYBOX_GATEWAY_URL: proxy.url,
        PYBOX_GATEWAY_TOKEN: gateway.token,
        PYBOX_GATEWAY_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
        PYBOX_START_TIMEOUT_MS: String(START_TIMEOUT_MS),
      });
    } catch (error) {
      await proxy?.close();
      await gateway.stop();
      throw error;
    }
    api = server.api.as("alice");
    assert.equal((await api.start({ kernelId: "steady" })).status, 201);
    await api.run("steady", "x = 1");
  });

  afterEach(() => {
    proxy.heal();
  });

  after(async () => {
    proxy?.heal();
    await server?.stop();
    await proxy?.close();
    await gateway?.stop();
  });

  describe("a gateway answering 5xx", () => {
    it("answers 503 when the gateway answers 503 to a start, records nothing, and starts once it is back", async () => {
      // Prepare
      const before = await gatewayKernels();
      proxy.inject({ kind: "status", status: 503 }, { when: isStart });

      // Act
      const res = await api.start({ kernelId: "unlucky" });

      // Assess
      assertUnavailable(res);
      assert.equal((await api.get("unlucky")).status, 404, "nothing recorded");
      assert.deepEqual(await gatewayKernels(), before, "nothing made");
      proxy.heal();
      assert.equal((await api.start({ kernelId: "unlucky" })).status, 201);
      assert.equal(await api.eval("unlucky", "6 * 7"), "42");
      assert.equal((await api.stop("unlucky")).status, 204);
    });

    it("answers 502 without the gateway's traceback when the gateway fails a start with a 500", async () => {
      // Prepare
      proxy.inject(
        {
          kind: "status",
          status: 500,
          body: {
            reason: "Internal Server Error",
            message: "launch failed",
            traceback:
              'Traceback (most recent call last):\n  File "/opt/eg/kernels.py", line 42\nRuntimeError',
          },
        },
        { when: isStart },
      );

      // Act
      const res = await api.start({ kernelId: "broken" });

      // Assess
      assert.equal(res.status, 502, res.text);
      assert.equal(errorOf(res).code, "BACKEND_ERROR");
      assertNothingLeaked(res);
      assert.equal((await api.get("broken")).status, 404);
    });

    it("keeps a kernel the gateway cannot describe for a while, rather than calling it dead", async () => {
      // Prepare
      proxy.inject({ kind: "status", status: 502 }, { when: isModelRead });

      // Act
      const get = await api.get("steady");

      // Assess
      assertUnavailable(get);
      proxy.heal();
      assert.equal((await api.get("steady")).body.state, "idle");
      assert.equal(await api.eval("steady", "x"), "1", "the kernel kept its state");
    });
  });

  describe("a slow gateway", () => {
    it("answers 503 within seconds when the gateway answers later than the request timeout", async () => {
      // Prepare
      proxy.inject({ kind: "delay", ms: 4 * REQUEST_TIMEOUT_MS }, { when: isModelRead });
      const started = Date.now();

      // Act
      const get = await api.get("steady");

      // Assess
      assertUnavailable(get);
      assert.ok(Date.now() - started < 3 * REQUEST_TIMEOUT_MS, `answered after ${Date.now() - started} ms`);
      proxy.heal();
      assert.equal((await api.get("steady")).body.state, "idle", "slowness marked nothing dead");
    });

    it("waits for a launch slower than one request may take, within the start's budget", async () => {
      // Prepare: a remote launch (a pod, a YARN container) answers only once the kernel is up.
      proxy.inject({ kind: "delay", ms: 2 * REQUEST_TIMEOUT_MS }, { when: isStart });

      // Act
      const res = await api.start({ kernelId: "remote-launch" });

      // Assess
      assert.equal(res.status, 201, res.text);
      proxy.heal();
      assert.equal(await api.eval("remote-launch", "6 * 7"), "42");
      assert.equal((await api.stop("remote-launch")).status, 204);
    });

    it("gives up a start the gateway is too slow to answer with 503, and leaves no kernel on it", async () => {
      // Prepare
      const before = await gatewayKernels();
      proxy.inject({ kind: "delay", ms: START_TIMEOUT_MS + 5_000 }, { when: isStart });
      const started = Date.now();

      // Act
      const res = await api.start({ kernelId: "sluggish" });

      // Assess
      assertUnavailable(res);
      assert.ok(Date.now() - started >= START_TIMEOUT_MS - 1_000, "it waited out the start's budget");
      proxy.heal();
      assert.equal((await api.get("sluggish")).status, 404, "nothing recorded");
      assert.ok(
        await waitFor(async () => (await gatewayKernels()).length === before.length, 30_000),
        `a kernel was left on the gateway: ${JSON.stringify(await gatewayKernels())}`,
      );
    });
  });

  describe("kept websockets", () => {
    const upgrades = () => proxy.requests.filter((r) => r.upgrade).length;

    it("runs successive cells of a kernel on one kept websocket", async () => {
      await api.run("steady", "y = 0");
      const opened = upgrades();

      for (let i = 0; i < 3; i++) assert.equal((await api.run("steady", "y += 1")).status, 200);

      assert.equal(upgrades(), opened, "no new websocket for the next runs");
      assert.equal(await api.eval("steady", "y"), "3");
    });

    it("reuses a websocket kept for a while once it answers its probe", async () => {
      await api.run("steady", "w = 0");
      const opened = upgrades();

      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const res = await api.run("steady", "w += 1");

      assert.equal(res.status, 200, res.text);
      assert.equal(upgrades(), opened, "the kept websocket answered its probe and was reused");
      assert.equal(await api.eval("steady", "w"), "1");
    });

    it("opens a new websocket when the kept one was cut, and the run runs once", async () => {
      await api.run("steady", "z = 0");
      const opened = upgrades();

      proxy.dropWebsockets();
      const res = await api.run("steady", "z += 1");

      assert.equal(res.status, 200, res.text);
      assert.equal(upgrades(), opened + 1, "one new websocket");
      assert.equal(await api.eval("steady", "z"), "1", "the cell ran once");
    });

    it("closes a kernel's kept websocket when the kernel stops", async () => {
      const open = proxy.openWebsockets();
      assert.equal((await api.start({ kernelId: "brief" })).status, 201);
      await api.run("brief", "1");
      assert.equal(proxy.openWebsockets(), open + 1, "its websocket is kept");

      assert.equal((await api.stop("brief")).status, 204);

      assert.ok(await waitFor(() => proxy.openWebsockets() === open, 5_000), "its websocket was closed");
    });
  });

  describe("a gateway that goes down", () => {
    it("ends a run whose gateway vanishes under it with 502 RUN_OUTCOME_UNKNOWN within seconds, no retry invited; the kernel, not dead, ran the code once", async () => {
      // Prepare
      await api.run("steady", "import time\nticks = []");
      const running = api.run(
        "steady",
        "for _ in range(15):\n    ticks.append(1)\n    time.sleep(1)",
        20_000,
      );
      assert.ok(await waitFor(() => proxy.openWebsockets() > 0, 10_000), "the run's websocket opened");
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const cutAt = Date.now();

      // Act
      await proxy.goDown();
      let res: ApiResponse<unknown>;
      try {
        res = await running;
      } finally {
        await proxy.comeBack();
      }

      // Assess
      const took = Date.now() - cutAt;
      assert.equal(res.status, 502, res.text);
      assert.equal(
        res.headers.get("retry-after"),
        null,
        "a run that may have happened must not invite a retry",
      );
      const error = (res.body as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "RUN_OUTCOME_UNKNOWN");
      assert.match(error.message, /may have run/);
      assert.doesNotMatch(res.text, /127\.0\.0\.1|token|Traceback/);
      assert.ok(took < 15_000, `answered ${took} ms after the gateway went away, not at the run's timeout`);
      const after = await api.get("steady");
      assert.equal(after.body.state, "idle", `an unreachable gateway marks nothing dead: ${after.text}`);
      assert.equal(await api.eval("steady", "len(ticks)"), "15", "the cell ran to its end, once");
      assert.equal(await api.eval("steady", "x"), "1");
    });

    it("answers 503 while the gateway refuses connections, and serves the same kernel once it is back", async () => {
      // Prepare
      await proxy.goDown();
      let res: ApiResponse<unknown>[];
      try {
        // Act
        res = [
          await api.start({ kernelId: "refused" }),
          await api.run("steady", "x = 2"),
          await api.get("steady"),
        ];
      } finally {
        await proxy.comeBack();
      }

      // Assess
      for (const r of res) assertUnavailable(r);
      assert.equal((await api.get("refused")).status, 404);
      assert.equal(await api.eval("steady", "x"), "1", "the refused run did not run");
    });
  });
});
