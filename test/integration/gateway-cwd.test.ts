import assert from "node:assert/strict";
import { mkdtemp, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ApiClient, ApiResponse, RunResultBody } from "../support/api.ts";
import { type RunningGateway, startGateway } from "../support/gateway.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { waitFor } from "../support/local-kernels.ts";

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): { code: string; message: string } {
  return (res.body as { error: { code: string; message: string } }).error;
}

/** What a run printed to stdout, or a failure naming what it answered instead. */
async function printed(api: ApiClient, kernelId: string, code: string): Promise<string> {
  const res = await api.run(kernelId, code);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.status, "ok", res.text);
  return String(res.body.data[0]?.["text/plain"] ?? "").trim();
}

/**
 * The caller's `cwd` on a stock Enterprise Gateway: started without `EG_MIRROR_WORKING_DIRS` and
 * with the stock `python3` kernelspec, it ignores `KERNEL_WORKING_DIR` and starts every local
 * kernel in its own directory. The backend moves the kernel with silent requests, refuses a
 * directory that is not there (leaving no kernel behind), or makes it when the operator allows.
 */
describe("gateway backend: the caller's cwd on a gateway that ignores KERNEL_WORKING_DIR", {
  timeout: 600_000,
}, () => {
  let gateway: RunningGateway;
  let root = "";

  /** The gateway's own list of its kernels, asked directly. */
  async function gatewayKernels(): Promise<string[]> {
    const res = await fetch(`${gateway.url}/api/kernels`, {
      headers: { Authorization: `token ${gateway.token}` },
    });
    assert.equal(res.status, 200, "the gateway lists its kernels (list_kernels)");
    return ((await res.json()) as Array<{ id: string }>).map((kernel) => kernel.id);
  }

  /** Starts the dev API in front of the gateway, with `extra` settings. */
  function startApi(extra: Record<string, string> = {}): Promise<LocalApi> {
    return startLocalApi({
      PYBOX_BACKEND: "gateway",
      PYBOX_GATEWAY_URL: gateway.url,
      PYBOX_GATEWAY_TOKEN: gateway.token,
      ...extra,
    });
  }

  before(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), "pybox-gw-cwd-")));
    gateway = await startGateway("enterprise", ["--EnterpriseGatewayApp.list_kernels=True"], {
      kernelSpec: "stock",
    });
  });

  after(async () => {
    await gateway?.stop();
    await rm(root, { recursive: true, force: true });
  });

  describe("with the default settings", () => {
    let server: LocalApi | undefined;
    let api: ApiClient;

    before(async () => {
      server = await startApi();
      api = server.api.as("carol");
    });

    after(async () => {
      await server?.stop();
    });

    it("starts a kernel without cwd in the gateway's own directory (the gateway moves no kernel)", async () => {
      // Act
      const started = await api.start({ kernelId: "no-cwd" });

      // Assess
      assert.equal(started.status, 201, started.text);
      const cwd = await printed(api, "no-cwd", "import os; print(os.getcwd())");
      assert.ok(!cwd.startsWith(root), `the kernel is in ${cwd}`);
      assert.equal((await api.stop("no-cwd")).status, 204);
    });

    describe("a start with an existing cwd", () => {
      let workDir = "";
      let first: ApiResponse<RunResultBody> | undefined;

      before(async () => {
        workDir = await mkdtemp(join(root, "work-"));
        await writeFile(join(workDir, "helpers.py"), "ANSWER = 42\n");
        const started = await api.start({ kernelId: "in-cwd", cwd: workDir });
        assert.equal(started.status, 201, started.text);
        first = await api.run("in-cwd", "import os; print(os.getcwd())");
      });

      after(async () => {
        await api.stop("in-cwd");
      });

      it("runs the kernel in that directory", () => {
        // Assess
        assert.equal(first?.status, 200, first?.text);
        assert.equal(first?.body.status, "ok", first?.text);
        assert.deepEqual(first?.body.data, [{ "text/plain": `${workDir}\n` }]);
      });

      it("counts the caller's first run as execution 1: the set-up requests were silent", () => {
        // Assess
        assert.equal(first?.body.executionCount, 1);
      });

      it("leaves `_` alone: the set-up showed no value", async () => {
        // Act
        const out = await printed(api, "in-cwd", "print(repr(_))");

        // Assess
        assert.equal(out, "''");
      });

      it("imports the caller's modules from that directory", async () => {
        // Act
        const out = await printed(api, "in-cwd", "import helpers; print(helpers.ANSWER)");

        // Assess
        assert.equal(out, "42");
      });

      it("writes relative paths there", async () => {
        // Act
        await printed(api, "in-cwd", "open('made-here.txt', 'w').write('hi'); print('ok')");

        // Assess
        assert.ok((await stat(join(workDir, "made-here.txt"))).isFile());
      });
    });

    it("refuses a cwd that does not exist with 400, and leaves no kernel on the gateway", async () => {
      // Prepare
      const missing = join(root, "missing", "deeper");
      const kernelsBefore = await gatewayKernels();

      // Act
      const res = await api.start({ kernelId: "nowhere", cwd: missing });

      // Assess
      assert.equal(res.status, 400, res.text);
      assert.equal(errorOf(res).code, "INVALID_REQUEST");
      assert.match(errorOf(res).message, /does not exist/);
      assert.ok(errorOf(res).message.includes(missing), errorOf(res).message);
      assert.equal((await api.get("nowhere")).status, 404, "nothing recorded");
      const leftOver = async () => (await gatewayKernels()).filter((id) => !kernelsBefore.includes(id));
      assert.ok(
        await waitFor(async () => (await leftOver()).length === 0, 10_000),
        "a kernel was left behind",
      );
      await assert.rejects(stat(missing), "the directory was made");
    });

    it("refuses a cwd that is a file with 400", async () => {
      // Prepare
      const file = join(root, "a-file");
      await writeFile(file, "");

      // Act
      const res = await api.start({ kernelId: "file-cwd", cwd: file });

      // Assess
      assert.equal(res.status, 400, res.text);
      assert.match(errorOf(res).message, /is not a directory/);
    });
  });

  describe("with PYBOX_GATEWAY_CREATE_CWD=true", () => {
    let server: LocalApi | undefined;
    let api: ApiClient;

    before(async () => {
      server = await startApi({ PYBOX_GATEWAY_CREATE_CWD: "true" });
      api = server.api.as("dave");
    });

    after(async () => {
      await server?.stop();
    });

    it("makes a missing cwd and runs the kernel there", async () => {
      // Prepare
      const missing = join(root, "made", "for", "dave");

      // Act
      const res = await api.start({ kernelId: "made", cwd: missing });

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.ok((await stat(missing)).isDirectory());
      const first = await api.run("made", "import os; print(os.getcwd())");
      assert.deepEqual(first.body.data, [{ "text/plain": `${missing}\n` }]);
      assert.equal(first.body.executionCount, 1);
      assert.equal((await api.stop("made")).status, 204);
    });
  });
});
