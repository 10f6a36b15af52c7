import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../lib/config.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { createRuntime } from "../../lib/runtime.ts";
import type { SandboxService } from "../../lib/sandbox/service.ts";
import { localKernelPid } from "../support/kernel-process.ts";

/**
 * Two service instances on one table are two Lambda containers: each remembers kernel refs of its
 * own, and neither may act on a kernel the other has replaced.
 */
describe("sandbox service across containers", { timeout: 120_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let stateDir: string;
  let first: SandboxService;
  let second: SandboxService;

  before(async () => {
    dynamo = await startEmbeddedDynamo();
    stateDir = await mkdtemp(join(tmpdir(), "pybox-service-"));
    const config = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
    await ensureTable(dynamo.endpoint, config.table);
    const shared = { ...config, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } };
    first = (await createRuntime(shared)).sandbox;
    second = (await createRuntime(shared)).sandbox;
  });

  after(async () => {
    await first?.stopAll();
    await dynamo?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  it("runs in a kernel that another container stopped and started again under the same id", async () => {
    await first.start("owner", { kernelId: "k" });
    await first.run("owner", "k", "x = 'old'");

    await second.stop("owner", "k");
    const restarted = await second.start("owner", { kernelId: "k" });
    const result = await first.run("owner", "k", "'x' in globals()");

    assert.equal(restarted.created, true);
    assert.equal(result.status, "ok");
    assert.deepEqual(result.data, [{ "text/plain": "False" }]);
    assert.equal((await second.get("owner", "k")).state, "idle");
  });

  it("runs in a kernel that another container revived after it died", async () => {
    await first.start("owner", { kernelId: "phoenix" });
    const pid = await localKernelPid(async (code) =>
      String((await first.run("owner", "phoenix", code)).data[0]?.["text/plain"]),
    );
    process.kill(pid, "SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 300));

    const revived = await second.start("owner", { kernelId: "phoenix" });
    const result = await first.run("owner", "phoenix", "6 * 7");

    assert.equal(revived.kernel.restarted, true);
    assert.deepEqual(result.data, [{ "text/plain": "42" }]);
  });

  it("answers a start that a concurrent stop cut short with KERNEL_STOPPED, leaving no kernel", async () => {
    const starting = first.start("owner", { kernelId: "cut-short" });
    starting.catch(() => undefined);
    while ((await second.get("owner", "cut-short").catch(() => undefined))?.state !== "starting") {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }

    await second.stop("owner", "cut-short");

    await assert.rejects(starting, { name: "KernelStoppedError" });
    await assert.rejects(second.get("owner", "cut-short"), { name: "NotFoundError" });
    const kernelDirs = await readdir(join(stateDir, "kernels"));
    assert.equal(
      kernelDirs.length,
      2,
      "only the two earlier tests' kernels remain; the cut-short one was stopped",
    );
  });
});
