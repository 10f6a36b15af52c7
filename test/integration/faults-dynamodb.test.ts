import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, it } from "node:test";
import { type Config, loadConfig } from "../../lib/config.ts";
import type { QueueMessage } from "../../lib/core/queue-message.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { lambdaContext } from "../../lib/dev/lambda-context.ts";
import { runtimeConsumer } from "../../lib/queue/consumer.ts";
import type { QueueClient } from "../../lib/queue/port.ts";
import { createRuntime, type Runtime } from "../../lib/runtime.ts";
import type { ApiClient, ApiResponse } from "../support/api.ts";
import {
  type DynamoFaultProxy,
  type SeenDynamoRequest,
  startDynamoFaultProxy,
} from "../support/dynamodb-fault-proxy.ts";
import { type InProcessApi, startInProcessApi } from "../support/in-process-api.ts";
import { runningLocalKernels } from "../support/local-kernels.ts";
import { sqsDelivery } from "../support/sqs-delivery.ts";

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): { code: string; message: string } {
  return (res.body as { error: { code: string; message: string } }).error;
}

/** A synchronous invocation behind API Gateway has 29 s; the product must answer well inside it. */
const SYNC_BUDGET_MS = 29_000;

/** Selectors for the store's calls, by what they write. */
const isCompleteWrite = (r: SeenDynamoRequest) =>
  r.operation === "UpdateItem" && String(r.body.UpdateExpression).includes("#ref = :ref");
const isLeaseTake = (r: SeenDynamoRequest) =>
  r.operation === "UpdateItem" && String(r.body.UpdateExpression).startsWith("SET leaseId = :lease");
const isLeaseRelease = (r: SeenDynamoRequest) =>
  r.operation === "UpdateItem" && String(r.body.ConditionExpression) === "leaseId = :lease";

/**
 * DynamoDB throttling, failing, unreachable or silent, between the product and a real DynamoDB API
 * (dynalite), injected by a proxy double. What a caller sees: brief trouble is ridden out by the
 * SDK's retries; lasting trouble is a `503 STORE_UNAVAILABLE` with `Retry-After` inside the
 * synchronous time budget, saying nothing of DynamoDB; no kernel runs without a record; no code
 * runs without its lease, and none twice.
 */
describe("DynamoDB faults", { timeout: 300_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let proxy: DynamoFaultProxy;
  let stateDir: string;
  let config: Config;
  let server: InProcessApi;
  let api: ApiClient;

  /** Asserts a 503 from the store: fixed message, Retry-After, nothing of DynamoDB or the proxy. */
  function assertStoreUnavailable(res: ApiResponse<unknown>): void {
    assert.equal(res.status, 503, res.text);
    assert.equal(errorOf(res).code, "STORE_UNAVAILABLE");
    assert.equal(errorOf(res).message, "the kernel store is unavailable; try again shortly");
    assert.match(res.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
    assert.doesNotMatch(res.text, /Throughput|Throttl|amazonaws|127\.0\.0\.1|ECONN|Timeout|at .+:\d+/);
    assert.ok(!res.text.includes(new URL(proxy.url).port), res.text);
  }

  before(async () => {
    dynamo = await startEmbeddedDynamo();
    proxy = await startDynamoFaultProxy(dynamo.endpoint);
    stateDir = await mkdtemp(join(tmpdir(), "pybox-faults-dynamo-"));
    const loaded = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
    config = { ...loaded, dynamodb: { ...LOCAL_AWS, endpoint: proxy.url } };
    await ensureTable(dynamo.endpoint, config.table);
    server = await startInProcessApi(config);
    api = server.api.as("alice");
  });

  afterEach(() => {
    proxy.heal();
  });

  after(async () => {
    proxy?.heal();
    await server?.close();
    await proxy?.close();
    await dynamo?.close();
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  describe("throttling", () => {
    it("rides out brief throttling: the SDK retries the throttled call and the start succeeds", async () => {
      // Prepare
      const seenBefore = proxy.requests.length;
      proxy.inject({ kind: "throttle" }, { count: 3 });

      // Act
      const res = await api.start({ kernelId: "brief" });

      // Assess
      assert.equal(res.status, 201, res.text);
      const seen = proxy.requests.slice(seenBefore);
      const first = seen.filter((r) => r.operation === seen[0]?.operation).slice(0, 4);
      assert.deepEqual(
        first.map((r) => [r.attempt, r.fault ?? "forwarded"]),
        [
          [1, "throttle"],
          [2, "throttle"],
          [3, "throttle"],
          [4, "forwarded"],
        ],
        "the same call, retried by the SDK until DynamoDB took it",
      );
      assert.equal(await api.eval("brief", "6 * 7"), "42");
      assert.equal((await runningLocalKernels(stateDir)).length, 1);
      assert.equal((await api.stop("brief")).status, 204);
    });

    it("also rides out DynamoDB's ThrottlingException", async () => {
      // Prepare
      proxy.inject({ kind: "throttle", type: "ThrottlingException" }, { count: 2 });

      // Act
      const res = await api.start({ kernelId: "brief-2" });

      // Assess
      assert.equal(res.status, 201, res.text);
      assert.equal((await api.stop("brief-2")).status, 204);
    });

    it("answers 503 STORE_UNAVAILABLE with Retry-After when throttling persists, and starts no kernel", async () => {
      // Prepare
      const seenBefore = proxy.requests.length;
      proxy.inject({ kind: "throttle" });
      const started = Date.now();

      // Act
      const res = await api.start({ kernelId: "persistent" });

      // Assess
      const took = Date.now() - started;
      assertStoreUnavailable(res);
      assert.ok(took < SYNC_BUDGET_MS, `answered after ${took} ms`);
      const seen = proxy.requests.slice(seenBefore);
      assert.ok(seen.length > 0 && seen.every((r) => r.fault === "throttle"));
      assert.deepEqual(
        seen.map((r) => r.attempt),
        [1, 2, 3, 4, 5],
        "one call, tried the SDK's five times, then given up",
      );
      assert.equal((await runningLocalKernels(stateDir)).length, 0, "no kernel was started");
      proxy.heal();
      assert.equal((await api.get("persistent")).status, 404, "nothing was recorded");
      assert.equal((await api.start({ kernelId: "persistent" })).status, 201);
      assert.equal((await api.stop("persistent")).status, 204);
    });

    it("stops the kernel of a start whose record cannot be written, so none runs unrecorded", async () => {
      // Prepare
      proxy.inject({ kind: "throttle" }, { when: isCompleteWrite });

      // Act
      const res = await api.start({ kernelId: "unrecorded" });

      // Assess
      assertStoreUnavailable(res);
      assert.equal((await runningLocalKernels(stateDir)).length, 0, "the launched kernel was stopped");
      proxy.heal();
      assert.equal((await api.get("unrecorded")).status, 404, "the abandoned start was cleaned up");
      const again = await api.start({ kernelId: "unrecorded" });
      assert.equal(again.status, 201, again.text);
      assert.equal((await runningLocalKernels(stateDir)).length, 1);
      assert.equal((await api.stop("unrecorded")).status, 204);
    });

    it("runs nothing when the run's lease cannot be taken, and the kernel keeps its state", async () => {
      // Prepare
      assert.equal((await api.start({ kernelId: "leased" })).status, 201);
      await api.run("leased", "ran = []");
      proxy.inject({ kind: "throttle" }, { when: isLeaseTake });

      // Act
      const res = await api.run("leased", "ran.append('throttled')");

      // Assess
      assertStoreUnavailable(res);
      proxy.heal();
      assert.equal(await api.eval("leased", "ran"), "[]", "the code was not run");
      assert.equal((await api.get("leased")).body.state, "idle");
    });

    it("answers a run whose code ran with its result even if the lease cannot be given back", async () => {
      // Prepare
      await api.run("leased", "ran = []");
      proxy.inject({ kind: "throttle" }, { when: isLeaseRelease });

      // Act
      const res = await api.run("leased", "ran.append('once')\nlen(ran)");

      // Assess
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.body.data, [{ "text/plain": "1" }], "ran once, answered, not invited to retry");
      assert.ok(proxy.requests.some((r) => isLeaseRelease(r) && r.fault === "throttle"));
    });
  });

  describe("server errors and resets", () => {
    it("retries DynamoDB's 500s and dropped connections without the caller noticing", async () => {
      // Prepare
      proxy.inject({ kind: "internal-error" }, { count: 2 });
      const first = await api.start({ kernelId: "bumpy" });
      proxy.inject({ kind: "reset" }, { count: 2 });

      // Act
      const read = await api.get("bumpy");

      // Assess
      assert.equal(first.status, 201, first.text);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.body.state, "idle");
      assert.equal((await api.stop("bumpy")).status, 204);
    });
  });

  describe("unreachable", () => {
    it("answers 503 within seconds while DynamoDB refuses connections, and recovers when it is back", async () => {
      // Prepare
      assert.equal((await api.start({ kernelId: "outage" })).status, 201);
      await api.run("outage", "kept = 'yes'");
      await proxy.goDown();
      try {
        const started = Date.now();

        // Act
        const get = await api.get("outage");
        const run = await api.run("outage", "kept = 'overwritten'");
        const start = await api.start({ kernelId: "during-outage" });

        // Assess
        assert.ok(Date.now() - started < 3 * SYNC_BUDGET_MS);
        for (const res of [get, run, start]) assertStoreUnavailable(res);
      } finally {
        await proxy.comeBack();
      }
      assert.equal((await api.get("outage")).body.state, "idle");
      assert.equal(await api.eval("outage", "kept"), "'yes'", "the run refused during the outage never ran");
      assert.equal((await api.get("during-outage")).status, 404);
      assert.equal((await runningLocalKernels(stateDir)).length, 2, "leased + outage, nothing more");
    });

    it("answers 503 inside the synchronous budget when DynamoDB accepts connections but never answers", async () => {
      // Prepare
      proxy.inject({ kind: "hang" });
      const started = Date.now();

      // Act
      const res = await api.get("outage");

      // Assess
      const took = Date.now() - started;
      assertStoreUnavailable(res);
      assert.ok(took < SYNC_BUDGET_MS, `answered after ${took} ms`);
      proxy.heal();
      assert.equal((await api.get("outage")).body.state, "idle", "a silent store marks nothing dead");
    });
  });

  describe("in the queue consumer", () => {
    /** A second container that only consumes, with a queue double that records what it is asked. */
    let consumerRuntime: Runtime;
    const sent: QueueMessage[] = [];
    const handedBack: Array<{ receiptHandle: string; delaySeconds: number }> = [];

    before(async () => {
      const queue: QueueClient = {
        send: async (message) => {
          sent.push(message);
        },
        retryLater: async (receiptHandle, delaySeconds) => {
          handedBack.push({ receiptHandle, delaySeconds });
        },
      };
      consumerRuntime = await createRuntime(config, queue);
    });

    it("hands a queued run back while DynamoDB throttles, then runs it once when it recovers", async () => {
      // Prepare
      const consumer = runtimeConsumer(consumerRuntime);
      await consumerRuntime.sandbox.start("alice", { kernelId: "queued" });
      await consumerRuntime.sandbox.run("alice", "queued", "count = 0");
      const view = await consumerRuntime.runs.submit("alice", "queued", {
        code: "count += 1\ncount",
        runId: `r-${randomUUID()}`,
      });
      const message = sent.at(-1);
      assert.ok(message);
      const messageId = randomUUID();
      proxy.inject({ kind: "throttle" });

      // Act
      const throttled = await consumer(sqsDelivery(message, messageId, 1), lambdaContext("queue", 60_000));
      proxy.heal();
      const recovered = await consumer(sqsDelivery(message, messageId, 2), lambdaContext("queue", 60_000));
      const duplicate = await consumer(sqsDelivery(message, randomUUID(), 1), lambdaContext("queue", 60_000));

      // Assess
      assert.deepEqual(throttled.batchItemFailures, [{ itemIdentifier: messageId }]);
      assert.ok(handedBack.some((h) => h.receiptHandle === `receipt-${messageId}-1` && h.delaySeconds > 0));
      assert.deepEqual(recovered.batchItemFailures, []);
      assert.deepEqual(duplicate.batchItemFailures, []);
      const done = await consumerRuntime.runs.get("alice", "queued", view.runId);
      assert.equal(done.status, "ok");
      assert.deepEqual(done.result?.data, [{ "text/plain": "1" }]);
      const count = await consumerRuntime.sandbox.run("alice", "queued", "count");
      assert.deepEqual(count.data, [{ "text/plain": "1" }], "run exactly once");
    });
  });
});
