import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { isRunning } from "../../lib/backends/process.ts";
import { type Config, loadConfig } from "../../lib/config.ts";
import type { QueueMessage } from "../../lib/core/queue-message.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { lambdaContext } from "../../lib/dev/lambda-context.ts";
import { runtimeConsumer } from "../../lib/queue/consumer.ts";
import type { QueueClient } from "../../lib/queue/port.ts";
import { createRuntime, type Runtime } from "../../lib/runtime.ts";
import { createDocumentClient, createDynamoClient } from "../../lib/store/dynamodb.ts";
import { KernelStore } from "../../lib/store/kernel-store.ts";
import type { ApiResponse } from "../support/api.ts";
import { startDynamoFaultProxy } from "../support/dynamodb-fault-proxy.ts";
import { localKernelPid, processExists } from "../support/kernel-process.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { runningLocalKernels, waitFor } from "../support/local-kernels.ts";
import { sqsDelivery } from "../support/sqs-delivery.ts";

const ROOT = join(import.meta.dirname, "..", "..");

/** How long until a dead kernel must be reported; "within seconds", not the run's timeout. */
const NOTICE_MS = 10_000;

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): { code: string; message: string } {
  return (res.body as { error: { code: string; message: string } }).error;
}

/** Python that appends `line` to the ledger file: a run's side effect the test can count. */
function ledgerLine(ledger: string, line: string): string {
  return `open(${JSON.stringify(ledger)}, 'a').write(${JSON.stringify(`${line}\n`)})`;
}

async function readLedger(ledger: string): Promise<string> {
  return readFile(ledger, "utf8").catch(() => "");
}

/**
 * Faults of kernels and of the service's own processes, on the local backend: kernels killed or
 * stopped under a run, a start that crashes before recording its kernel, concurrent starts from
 * several containers, and a queued run delivered to two containers at once. Each must end in a
 * clear answer, with nothing lost, nothing left running and nothing run twice.
 */
describe("faults", { timeout: 300_000 }, () => {
  describe("through the HTTP API (npm start)", () => {
    let server: LocalApi;
    let ledgers: string;

    before(async () => {
      server = await startLocalApi();
      ledgers = await mkdtemp(join(tmpdir(), "pybox-ledgers-"));
    });

    after(async () => {
      await server?.stop();
      if (ledgers) await rm(ledgers, { recursive: true, force: true });
    });

    it("ends a run whose kernel is killed from outside with 409 KERNEL_DEAD within seconds, run once", async () => {
      // Prepare
      const api = server.api.as("alice");
      const cwd = await mkdtemp(join(ledgers, "killed-"));
      const ledger = join(cwd, "ledger");
      const started = await api.start({ kernelId: "killed", cwd });
      assert.equal(started.status, 201, `${started.text}\n${server.output().slice(-2000)}`);
      const pid = await localKernelPid((code) => api.eval("killed", code));
      const running = api.run("killed", `${ledgerLine(ledger, "ran")}\nimport time\ntime.sleep(60)`, 20_000);
      assert.ok(await waitFor(async () => (await readLedger(ledger)) !== "", NOTICE_MS), "the run began");

      // Act
      process.kill(pid, "SIGKILL");
      const killedAt = Date.now();
      const res = await running;

      // Assess
      assert.ok(Date.now() - killedAt < NOTICE_MS, `noticed after ${Date.now() - killedAt} ms`);
      assert.equal(res.status, 409, res.text);
      assert.equal(errorOf(res).code, "KERNEL_DEAD");
      assert.match(errorOf(res).message, /died/);
      assert.equal((await api.get("killed")).body.state, "dead");
      const revived = await api.start({ kernelId: "killed", cwd });
      assert.equal(revived.status, 201, revived.text);
      assert.equal(revived.body.restarted, true);
      assert.equal(await api.eval("killed", "6 * 7"), "42");
      assert.equal(await readLedger(ledger), "ran\n", "the killed run was not run again");
      assert.equal((await api.stop("killed")).status, 204);
    });

    it("ends a run whose kernel is stopped under it with a clear 409, stops the process, keeps nothing", async () => {
      // Prepare
      const api = server.api.as("alice");
      const cwd = await mkdtemp(join(ledgers, "stopped-"));
      const ledger = join(cwd, "ledger");
      const started = await api.start({ kernelId: "stopped", cwd });
      assert.equal(started.status, 201, `${started.text}\n${server.output().slice(-2000)}`);
      const pid = await localKernelPid((code) => api.eval("stopped", code));
      const code = `${ledgerLine(ledger, "start")}\nimport time\ntime.sleep(15)\n${ledgerLine(ledger, "end")}`;
      const running = api.run("stopped", code, 20_000);
      assert.ok(await waitFor(async () => (await readLedger(ledger)) !== "", NOTICE_MS), "the run began");

      // Act
      const stopped = await api.stop("stopped");
      const stoppedAt = Date.now();
      const res = await running;

      // Assess
      assert.equal(stopped.status, 204, stopped.text);
      assert.ok(
        Date.now() - stoppedAt < NOTICE_MS,
        `the run ended ${Date.now() - stoppedAt} ms after the stop`,
      );
      assert.equal(res.status, 409, res.text);
      assert.equal(errorOf(res).code, "KERNEL_STOPPED");
      assert.doesNotMatch(res.text, /at .+:\d+|Traceback/);
      assert.ok(await waitFor(() => !processExists(pid), 5_000), "the kernel process is gone");
      assert.equal((await api.get("stopped")).status, 404, "the stopped kernel is forgotten");
      const fresh = await api.start({ kernelId: "stopped", cwd });
      assert.equal(fresh.status, 201, fresh.text);
      assert.equal(fresh.body.restarted, undefined, "a stopped kernel is started anew, not revived");
      assert.equal(
        await readLedger(ledger),
        "start\n",
        "the interrupted code neither finished nor ran again",
      );
      assert.equal((await api.stop("stopped")).status, 204);
    });
  });

  describe("across containers on one table", () => {
    let dynamo: EmbeddedDynamo;
    let stateDir: string;
    let config: Config;
    let first: Runtime;
    let second: Runtime;
    const handedBack: string[] = [];

    /** A queue double: the consumer only hands messages back through it. */
    const queue: QueueClient = {
      send: async () => undefined,
      retryLater: async (receiptHandle) => {
        handedBack.push(receiptHandle);
      },
    };

    before(async () => {
      dynamo = await startEmbeddedDynamo();
      stateDir = await mkdtemp(join(tmpdir(), "pybox-faults-"));
      const loaded = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
      config = { ...loaded, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } };
      await ensureTable(dynamo.endpoint, config.table);
      first = await createRuntime(config, queue);
      second = await createRuntime(config, queue);
    });

    after(async () => {
      await first?.sandbox.stopAll();
      for (const ref of stateDir ? await runningLocalKernels(stateDir) : [])
        process.kill(-ref.pid, "SIGKILL");
      await dynamo?.close();
      if (stateDir) await rm(stateDir, { recursive: true, force: true });
    });

    it("makes exactly one kernel process for many concurrent starts of one id from two containers", async () => {
      // Prepare
      const before = (await runningLocalKernels(stateDir)).length;

      // Act
      const outcomes = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? first : second).sandbox.start("alice", { kernelId: "racy" }),
        ),
      );

      // Assess
      assert.equal(outcomes.filter((o) => o.created).length, 1, "one start created it");
      assert.equal(new Set(outcomes.map((o) => o.kernel.createdAt)).size, 1, "all got the same kernel");
      assert.equal((await runningLocalKernels(stateDir)).length, before + 1, "one kernel process");
      const pids = await Promise.all(
        [first, second].map(
          async (rt) =>
            (await rt.sandbox.run("alice", "racy", "import os\nos.getpid()")).data[0]?.["text/plain"],
        ),
      );
      assert.equal(pids[0], pids[1]);
      await first.sandbox.stop("alice", "racy");
    });

    it("runs a queued run once when two containers get the same message at the same time", async () => {
      // Prepare
      await first.sandbox.start("alice", { kernelId: "dup" });
      await first.sandbox.run("alice", "dup", "hits = []");
      const message: QueueMessage = {
        action: "run",
        owner: "alice",
        kernelId: "dup",
        runId: "twice-at-once",
        code: "import time\ntime.sleep(1)\nhits.append(1)\nlen(hits)",
      };
      const deliver = (runtime: Runtime, messageId: string) =>
        runtimeConsumer(runtime)(sqsDelivery(message, messageId), lambdaContext("queue", 60_000));
      const [a, b] = [randomUUID(), randomUUID()];

      // Act
      const [fromFirst, fromSecond] = await Promise.all([deliver(first, a), deliver(second, b)]);
      const failed = [...fromFirst.batchItemFailures, ...fromSecond.batchItemFailures].map(
        (f) => f.itemIdentifier,
      );
      const redelivered = await Promise.all(failed.map((id) => deliver(second, id)));

      // Assess
      assert.equal(failed.length, 1, "one copy ran, the other was handed back");
      assert.ok(handedBack.includes(`receipt-${failed[0]}-1`));
      assert.deepEqual(
        redelivered.flatMap((r) => r.batchItemFailures),
        [],
        "the copy handed back is answered, not run",
      );
      const record = await first.runs.get("alice", "dup", "twice-at-once");
      assert.equal(record.status, "ok");
      assert.deepEqual(record.result?.data, [{ "text/plain": "1" }]);
      assert.deepEqual((await first.sandbox.run("alice", "dup", "hits")).data, [{ "text/plain": "[1]" }]);
      await first.sandbox.stop("alice", "dup");
    });

    it("stops the kernel of a start that crashed before recording it, then lets the id start again", async () => {
      // Prepare: a start in its own process, killed by the proxy double the moment it tries to
      // record its launched kernel, as a crashed (or timed-out) invocation would end. Unsandboxed,
      // so the kernel outlives it (a bubblewrap-confined kernel dies with the process that made it).
      const kernelsBefore = (await runningLocalKernels(stateDir)).length;
      const proxy = await startDynamoFaultProxy(dynamo.endpoint);
      const starter = spawn(
        process.execPath,
        ["--import", "tsx", join(ROOT, "test", "support", "start-one-kernel.ts"), "carol", "crashed"],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            PYBOX_STATE_DIR: stateDir,
            PYBOX_TABLE: config.table,
            PYBOX_DYNAMODB_ENDPOINT: proxy.url,
            PYBOX_START_TIMEOUT_MS: "5000",
            PYBOX_LOCAL_SANDBOX: "off",
            AWS_REGION: LOCAL_AWS.region,
            AWS_ACCESS_KEY_ID: LOCAL_AWS.credentials.accessKeyId,
            AWS_SECRET_ACCESS_KEY: LOCAL_AWS.credentials.secretAccessKey,
            POWERTOOLS_LOG_LEVEL: "WARN",
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let output = "";
      starter.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      starter.stderr.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      proxy.inject(
        { kind: "hang" },
        {
          when: (r) =>
            r.operation === "UpdateItem" && String(r.body.UpdateExpression).includes("#ref = :ref"),
          onFault: () => starter.kill("SIGKILL"),
        },
      );
      try {
        const [, signal] = (await once(starter, "exit")) as [number | null, NodeJS.Signals | null];
        assert.equal(signal, "SIGKILL", `the starter was not crashed where intended:\n${output}`);
      } finally {
        await proxy.close();
      }
      const store = new KernelStore(
        createDocumentClient(createDynamoClient(config.dynamodb)),
        config.table,
        config.recordTtlSeconds,
      );
      const left = await store.get("carol", "crashed");
      assert.equal(left?.state, "starting", "the crash left a start that never finished");
      assert.equal(left?.ref, undefined);
      const orphans = (await runningLocalKernels(stateDir)).length - kernelsBefore;
      assert.equal(orphans, 1, "and a kernel process no record points at");

      // Act
      const sweep = await second.sandbox.reap(60 * 60_000, 0);

      // Assess
      assert.equal(sweep.orphans, 1);
      assert.equal((await runningLocalKernels(stateDir)).length, kernelsBefore, "the orphan was stopped");
      await sleep(Math.max(0, (left?.startingUntil ?? 0) - Date.now() + 100));
      const later = await second.sandbox.reap(60 * 60_000, 0);
      assert.equal(later.stalled, 1, "the crashed start's record is cleaned up once its claim lapses");
      assert.equal(await store.get("carol", "crashed"), undefined);
      const again = await first.sandbox.start("carol", { kernelId: "crashed" });
      assert.equal(again.created, true);
      assert.equal((await first.sandbox.run("carol", "crashed", "6 * 7")).data[0]?.["text/plain"], "42");
      const record = await store.get("carol", "crashed");
      assert.ok(record?.ref && (await isRunning(record.ref as { pid: number; startTime: number | null })));
      await first.sandbox.stop("carol", "crashed");
    });
  });
});
