import assert from "node:assert/strict";
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ApiClient } from "../support/api.ts";
import { type RunningGateway, startGateway } from "../support/gateway.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { runningLocalKernels, waitFor } from "../support/local-kernels.ts";

/**
 * What a caller can see of a fresh kernel: where it is, its environment, its namespace and its
 * history. Values naming the kernel's own folders (or the server's state folder) are written as
 * placeholders, so a pooled kernel and a cold one compare equal when they are alike.
 */
const PROBE = `
import json as _j, os as _o
_places = {_o.path.dirname(_o.environ.get("HOME", "/")): "<kernel>", STATE_DIR: "<state>"}
def _norm(value):
    for place, name in _places.items():
        value = value.replace(place, name)
    return value
print(_j.dumps({
    "cwd": _norm(_o.getcwd()),
    "cwd_is_home": _o.getcwd() == _o.environ.get("HOME"),
    "cwd_entries": sorted(_o.listdir(".")),
    "env": {k: _norm(v) for k, v in sorted(_o.environ.items()) if k not in ("JPY_PARENT_PID", "KERNEL_ID")},
    "names": sorted(n for n in globals() if not n.startswith("_")),
}))
`;

/** The probe's answer for a kernel, from its first run (whose execution count is returned too). */
async function probe(api: ApiClient, kernelId: string, stateDir: string) {
  const res = await api.run(kernelId, PROBE.replace("STATE_DIR", JSON.stringify(stateDir)));
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.status, "ok", res.text);
  return {
    executionCount: res.body.executionCount,
    seen: JSON.parse(String(res.body.data[0]?.["text/plain"])) as Record<string, unknown>,
  };
}

/** The local kernel id behind a caller's kernel (its runtime folder's name). */
async function localKernelId(api: ApiClient, kernelId: string): Promise<string> {
  const dir = await api.eval(kernelId, "__import__('os').environ['IPYTHONDIR']");
  return basename(dirname(dir.replace(/^'|'$/g, "")));
}

/** The ids of the local kernels running under a server's state folder. */
async function localKernels(server: LocalApi): Promise<Set<string>> {
  return new Set((await runningLocalKernels(server.stateDir)).map((ref) => ref.id));
}

describe("warm pool: a pooled start is a cold start, sooner", { timeout: 600_000 }, () => {
  describe("local backend, through npm start", () => {
    let pooled: LocalApi;
    let cold: LocalApi;

    before(async () => {
      [pooled, cold] = await Promise.all([
        startLocalApi({ PYBOX_POOL_SIZE: "2" }),
        startLocalApi({ PYBOX_POOL_SIZE: "0" }),
      ]);
      assert.ok(
        await waitFor(() => /Warm pool ready: 2 kernel/.test(pooled.output()), 60_000),
        pooled.output(),
      );
    });

    after(async () => {
      await Promise.all([pooled?.stop(), cold?.stop()]);
    });

    it("hands out a kernel that was running before the start, seen by its caller exactly as a cold one", async () => {
      // Prepare
      const warm = await localKernels(pooled);
      assert.equal(warm.size, 2);
      const request = { kernelId: "k", env: { MY_SETTING: "on", TZ: "Asia/Tokyo" } };

      // Act
      const fromPool = await pooled.api.start(request);
      const fromNothing = await cold.api.start(request);

      // Assess
      assert.equal(fromPool.status, 201, fromPool.text);
      assert.equal(fromNothing.status, 201, fromNothing.text);
      const [a, b] = await Promise.all([
        probe(pooled.api, "k", pooled.stateDir),
        probe(cold.api, "k", cold.stateDir),
      ]);
      assert.deepEqual(a, b);
      assert.equal(a.executionCount, 1);
      assert.ok(warm.has(await localKernelId(pooled.api, "k")), "the kernel did not come from the pool");
      const written = await pooled.api.run("k", "open('made.txt', 'w').write('x')");
      assert.deepEqual(
        written.body.artifacts?.map((artifact) => artifact.path),
        ["made.txt"],
        "the pooled kernel's files are not where its caller works",
      );
      assert.equal((a.seen.env as Record<string, string>).MY_SETTING, "on");
      assert.equal(
        await pooled.api.eval("k", "__import__('time').strftime('%Z')"),
        await cold.api.eval("k", "__import__('time').strftime('%Z')"),
      );
    });

    it("gives concurrent starts different kernels, starts cold past the pool, and fills it again", async () => {
      // Prepare
      assert.ok(
        await waitFor(async () => (await localKernels(pooled)).size === 3, 30_000),
        "pool not refilled",
      );
      const before = await localKernels(pooled);

      // Act
      const starts = await Promise.all(["c1", "c2", "c3"].map((kernelId) => pooled.api.start({ kernelId })));

      // Assess
      for (const res of starts) assert.equal(res.status, 201, res.text);
      const ids = await Promise.all(
        ["c1", "c2", "c3"].map((kernelId) => localKernelId(pooled.api, kernelId)),
      );
      assert.equal(new Set(ids).size, 3, "two starts got the same kernel");
      assert.equal(ids.filter((id) => before.has(id)).length, 2, "the two pooled kernels were not both used");
      // k, c1..c3, and the pool back at 2.
      assert.ok(
        await waitFor(async () => (await localKernels(pooled)).size === 6, 60_000),
        "pool not refilled",
      );
    });

    it("starts cold for a variable only a process start reads, leaving the pool as it was", async () => {
      // Prepare
      const before = await localKernels(pooled);

      // Act
      const res = await pooled.api.start({ kernelId: "lang", env: { LC_ALL: "C.UTF-8" } });

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.ok(!before.has(await localKernelId(pooled.api, "lang")));
      assert.equal(await pooled.api.eval("lang", "__import__('os').environ['LC_ALL']"), "'C.UTF-8'");
    });

    it("stops the pool's kernels with the server", async () => {
      // Act
      await pooled.stop({ keepState: true });

      // Assess
      assert.equal((await localKernels(pooled)).size, 0);
      assert.match(pooled.output(), /Stopped 5 kernel/);
      await rm(pooled.stateDir, { recursive: true, force: true });
    });
  });

  describe("gateway backend, on a stock Enterprise Gateway", () => {
    let gateway: RunningGateway;
    let api: LocalApi;
    let root = "";

    /** The gateway's own list of its kernels, asked directly. */
    async function gatewayKernels(): Promise<string[]> {
      const res = await fetch(`${gateway.url}/api/kernels`, {
        headers: { Authorization: `token ${gateway.token}` },
      });
      assert.equal(res.status, 200);
      return ((await res.json()) as Array<{ id: string }>).map((kernel) => kernel.id);
    }

    before(async () => {
      root = await realpath(await mkdtemp(join(tmpdir(), "pybox-pool-cwd-")));
      gateway = await startGateway("enterprise", ["--EnterpriseGatewayApp.list_kernels=True"], {
        kernelSpec: "stock",
      });
      api = await startLocalApi({
        PYBOX_BACKEND: "gateway",
        PYBOX_GATEWAY_URL: gateway.url,
        PYBOX_GATEWAY_TOKEN: gateway.token,
        PYBOX_POOL_SIZE: "1",
      });
      assert.ok(await waitFor(() => /Warm pool ready: 1 kernel/.test(api.output()), 60_000), api.output());
    });

    after(async () => {
      await api?.stop();
      await gateway?.stop();
      await rm(root, { recursive: true, force: true });
    });

    it("moves a pooled kernel into the caller's cwd and names the caller, as a cold start does", async () => {
      // Prepare
      const warm = await gatewayKernels();
      assert.equal(warm.length, 1);

      // Act
      const res = await api.api.start({ kernelId: "g", cwd: root, env: { MY_SETTING: "on" } });

      // Assess
      assert.equal(res.status, 201, res.text);
      const seen = JSON.parse(
        (
          await api.api.eval(
            "g",
            "__import__('json').dumps([__import__('os').environ['KERNEL_ID'], __import__('os').getcwd(), __import__('os').environ['MY_SETTING'], __import__('os').environ['KERNEL_USERNAME'], __import__('os').environ['KERNEL_WORKING_DIR']])",
          )
        ).replace(/^'|'$/g, ""),
      ) as string[];
      assert.equal(seen[0], warm[0], "the kernel did not come from the pool");
      assert.deepEqual(seen.slice(1, 3), [root, "on"]);
      assert.equal(seen[4], root);
      // A start the pool cannot serve names the same caller.
      assert.equal((await api.api.start({ kernelId: "g-cold", env: { LC_ALL: "C.UTF-8" } })).status, 201);
      assert.equal(
        `'${seen[3]}'`,
        await api.api.eval("g-cold", "__import__('os').environ['KERNEL_USERNAME']"),
      );
      const written = await api.api.run("g", "open('made.txt', 'w').write('x')");
      assert.deepEqual(
        written.body.artifacts?.map((artifact) => artifact.path),
        ["made.txt"],
        "files are not relative to the caller's cwd",
      );
    });
  });
});
