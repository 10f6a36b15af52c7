import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { DeleteCommand } from "@aws-sdk/lib-dynamodb";
import { isRunning } from "../../lib/backends/process.ts";
import { type Config, loadConfig } from "../../lib/config.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { createRuntime } from "../../lib/runtime.ts";
import type { SandboxService } from "../../lib/sandbox/service.ts";
import { createDocumentClient, createDynamoClient } from "../../lib/store/dynamodb.ts";
import { KernelStore } from "../../lib/store/kernel-store.ts";

const IDLE_MS = 1_500;

/** The reaper against real kernels and a real DynamoDB API, with a short idle time. */
describe("reaper", { timeout: 180_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let stateDir: string;
  let config: Config;
  let sandbox: SandboxService;
  let store: KernelStore;

  before(async () => {
    dynamo = await startEmbeddedDynamo();
    stateDir = await mkdtemp(join(tmpdir(), "pybox-reaper-"));
    const loaded = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
    config = { ...loaded, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } };
    await ensureTable(dynamo.endpoint, config.table);
    sandbox = (await createRuntime(config)).sandbox;
    store = new KernelStore(
      createDocumentClient(createDynamoClient(config.dynamodb)),
      config.table,
      config.recordTtlSeconds,
    );
  });

  after(async () => {
    await sandbox?.stopAll();
    await dynamo?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  /** The kernel process behind a caller's kernel, read from its record. */
  async function processOf(owner: string, kernelId: string) {
    const record = await store.get(owner, kernelId);
    assert.ok(record?.ref, `no ref for ${kernelId}`);
    return { pid: record.ref.pid as number, startTime: record.ref.startTime as number | null };
  }

  it("stops a kernel idle past the limit and keeps one in use", async () => {
    await sandbox.start("alice", { kernelId: "idle" });
    await sandbox.start("alice", { kernelId: "busy" });
    const idle = await processOf("alice", "idle");
    await sleep(IDLE_MS + 200);
    await sandbox.run("alice", "busy", "x = 1");

    const report = await sandbox.reap(IDLE_MS);

    assert.equal(report.idle, 1);
    assert.equal(await store.get("alice", "idle"), undefined);
    assert.equal(await isRunning(idle), false);
    assert.equal((await sandbox.run("alice", "busy", "x")).data[0]?.["text/plain"], "1");
    await assert.rejects(sandbox.run("alice", "idle", "1"), { code: "NOT_FOUND" });
  });

  it("never reaps a kernel while a run holds it, however old its last activity", async () => {
    await sandbox.start("alice", { kernelId: "long-run" });
    await sleep(IDLE_MS + 200);
    const running = sandbox.run("alice", "long-run", "import time\ntime.sleep(2)\n'done'");
    await sleep(500);

    await sandbox.reap(1);

    assert.ok(await store.get("alice", "long-run"), "the record of a kernel in use is kept");
    assert.equal((await running).data[0]?.["text/plain"], "'done'");
  });

  it("marks a kernel whose process is gone dead, then forgets it once idle", async () => {
    await sandbox.start("bob", { kernelId: "crashed" });
    const { pid } = await processOf("bob", "crashed");
    process.kill(-pid, "SIGKILL");
    await sleep(300);

    const first = await sandbox.reap(60_000);
    assert.equal(first.dead, 1);
    assert.equal((await sandbox.get("bob", "crashed")).state, "dead");

    await sleep(IDLE_MS + 200);
    const second = await sandbox.reap(IDLE_MS);
    assert.equal(second.forgotten, 1);
    assert.equal(await store.get("bob", "crashed"), undefined);
  });

  it("stops a kernel no record points at (a crash between starting it and recording it)", async () => {
    await sandbox.start("carol", { kernelId: "orphan" });
    const orphan = await processOf("carol", "orphan");
    const documents = createDocumentClient(createDynamoClient(config.dynamodb));
    await documents.send(
      new DeleteCommand({ TableName: config.table, Key: { pk: "OWNER#carol", sk: "KERNEL#orphan" } }),
    );
    await sandbox.start("carol", { kernelId: "fresh" });
    const fresh = await processOf("carol", "fresh");

    const young = await sandbox.reap(60_000);
    assert.equal(young.orphans, 0, "a kernel younger than a start can take is left alone");
    assert.equal(await isRunning(orphan), true);

    const report = await sandbox.reap(60_000, 0);
    assert.equal(report.orphans, 1);
    assert.equal(await isRunning(orphan), false);
    assert.equal(await isRunning(fresh), true);
  });
});
