import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { type Config, loadConfig } from "../../lib/config.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { type QueueLambda, runtimeConsumer } from "../../lib/queue/consumer.ts";
import { messageGroupOf } from "../../lib/queue/messages.ts";
import { createRuntime, type Runtime } from "../../lib/runtime.ts";
import { sha256 } from "../../lib/sandbox/async-runs.ts";
import { createDocumentClient, createDynamoClient } from "../../lib/store/dynamodb.ts";
import { RunStore } from "../../lib/store/run-store.ts";
import { type ElasticMq, type LocalQueue, startElasticMq } from "../support/elasticmq.ts";
import { SqsEventSource } from "../support/sqs-event-source.ts";

/**
 * Producer and consumer against a real SQS API (ElasticMQ) and a real DynamoDB API (dynalite),
 * with real kernels: the FIFO queue, its dead-letter queue, visibility changes and receive counts
 * are the queue's own. Lambda's event source mapping is played by {@link SqsEventSource}.
 */
describe("run queue on SQS", { timeout: 240_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let mq: ElasticMq;
  let stateDir: string;
  let queue: LocalQueue;
  let dlq: LocalQueue;
  let runtime: Runtime;
  let source: SqsEventSource;
  let consumer: QueueLambda;
  let config: Config;
  let runs: RunStore;

  before(async () => {
    [dynamo, mq] = await Promise.all([startEmbeddedDynamo(), startElasticMq()]);
    stateDir = await mkdtemp(join(tmpdir(), "pybox-sqs-"));
    dlq = await mq.createQueue("runs-dlq.fifo");
    queue = await mq.createQueue("runs.fifo", {
      contentBasedDeduplication: true,
      visibilityTimeoutSeconds: 120,
      deadLetter: { arn: dlq.arn, maxReceiveCount: 3 },
    });
    const loaded = loadConfig({
      PYBOX_STATE_DIR: stateDir,
      PYBOX_TABLE: "kernels",
      PYBOX_QUEUE_URL: queue.url,
      PYBOX_BUSY_WAIT_MS: "200",
      PYBOX_QUEUE_MAX_RECEIVES: "3",
    });
    config = {
      ...loaded,
      dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint },
      queue: { ...loaded.queue, endpoint: mq.endpoint, region: mq.region, credentials: mq.credentials },
    };
    await ensureTable(dynamo.endpoint, config.table);
    runtime = await createRuntime(config);
    consumer = runtimeConsumer(runtime);
    source = new SqsEventSource(mq.sqs, queue.url, queue.arn, consumer);
    runs = new RunStore(createDocumentClient(createDynamoClient(config.dynamodb)), config.table, 3_600);
    await runtime.sandbox.start("alice", { kernelId: "k" });
  });

  after(async () => {
    await runtime?.sandbox.stopAll();
    await Promise.all([mq?.close(), dynamo?.close()]);
    await rm(stateDir, { recursive: true, force: true });
  });

  const finished = (kernelId: string, runId: string) => async () =>
    !["queued", "running"].includes((await runtime.runs.get("alice", kernelId, runId)).status);

  /** Sends a body as a trusted producer would, bypassing our API. */
  const sendRaw = (body: string, group: string, dedup?: string) =>
    mq.sqs.send(
      new SendMessageCommand({
        QueueUrl: queue.url,
        MessageBody: body,
        MessageGroupId: group,
        ...(dedup ? { MessageDeduplicationId: dedup } : {}),
      }),
    );

  it("carries a run from the producer through SQS to the kernel and back to its record", async () => {
    const view = await runtime.runs.submit("alice", "k", { code: "print('via sqs')" });
    assert.equal(view.status, "queued");
    await source.pollUntil(finished("k", view.runId));
    const done = await runtime.runs.get("alice", "k", view.runId);
    assert.equal(done.status, "ok");
    assert.deepEqual(done.result?.data, [{ "text/plain": "via sqs\n" }]);
  });

  it("runs a message delivered twice only once", async () => {
    await runtime.sandbox.run("alice", "k", "count = 0");
    const body = JSON.stringify({
      action: "run",
      owner: "alice",
      kernelId: "k",
      runId: "twice",
      code: "count += 1",
    });
    const group = messageGroupOf("alice", "k");
    // Two copies outside the deduplication window's reach: distinct deduplication ids.
    await sendRaw(body, group, "copy-1");
    await sendRaw(body, group, "copy-2");
    await source.pollUntil(async () => {
      const out = await mq.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queue.url, VisibilityTimeout: 0, WaitTimeSeconds: 0 }),
      );
      return (out.Messages ?? []).length === 0 && (await finished("k", "twice")());
    });
    assert.equal((await runtime.runs.get("alice", "k", "twice")).status, "ok");
    assert.equal((await runtime.sandbox.run("alice", "k", "count")).data[0]?.["text/plain"], "1");
  });

  it("sends a poison message to the dead-letter queue without failing its neighbours", async () => {
    await runtime.sandbox.start("alice", { kernelId: "neighbour" });
    await sendRaw("{not json", "poison-group");
    await sendRaw(JSON.stringify({ action: "explode", owner: "alice", kernelId: "k" }), "poison-group-2");
    const good = await runtime.runs.submit("alice", "neighbour", { code: "'fine'" });

    const dead: string[] = [];
    await source.pollUntil(async () => {
      const out = await mq.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: dlq.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
      );
      for (const m of out.Messages ?? []) dead.push(m.Body ?? "");
      return dead.length === 2 && (await finished("neighbour", good.runId)());
    });
    assert.deepEqual(dead.sort(), ['{"action":"explode","owner":"alice","kernelId":"k"}', "{not json"]);
    assert.equal((await runtime.runs.get("alice", "neighbour", good.runId)).status, "ok");
  });

  it("puts a run back on the queue while the kernel is busy, and runs it after", async () => {
    // A short consumer timeout leaves the queued run only a brief wait for the kernel.
    const short = new SqsEventSource(mq.sqs, queue.url, queue.arn, consumer, { timeoutMs: 15_000 });
    await runtime.sandbox.run("alice", "k", "log = []");
    const holding = runtime.sandbox.run("alice", "k", "import time\ntime.sleep(4)\nlog.append('sync')");
    await sleep(300);
    const queued = await runtime.runs.submit("alice", "k", {
      code: "log.append('queued')",
      timeoutMs: 1_000,
    });

    const first = await short.pollOnce();
    assert.equal(first.failed.length, 1, "the busy kernel defers the queued run");
    assert.equal((await runtime.runs.get("alice", "k", queued.runId)).status, "queued");

    await holding;
    await short.pollUntil(finished("k", queued.runId));
    assert.equal((await runtime.runs.get("alice", "k", queued.runId)).status, "ok");
    assert.equal(
      (await runtime.sandbox.run("alice", "k", "log")).data[0]?.["text/plain"],
      "['sync', 'queued']",
    );
  });

  it("waits in the consumer for a kernel a synchronous run holds, when there is time", async () => {
    await runtime.sandbox.run("alice", "k", "log = []");
    const holding = runtime.sandbox.run("alice", "k", "import time\ntime.sleep(2)\nlog.append('sync')");
    await sleep(300);
    const queued = await runtime.runs.submit("alice", "k", {
      code: "log.append('queued')",
      timeoutMs: 1_000,
    });

    const first = await source.pollOnce();
    await holding;
    assert.deepEqual(first.failed, [], "the run waited instead of going back to the queue");
    assert.equal((await runtime.runs.get("alice", "k", queued.runId)).status, "ok");
    assert.equal(
      (await runtime.sandbox.run("alice", "k", "log")).data[0]?.["text/plain"],
      "['sync', 'queued']",
    );
  });

  it("closes a run the kernel kept busy through every delivery, instead of leaving it queued", async () => {
    const short = new SqsEventSource(mq.sqs, queue.url, queue.arn, consumer, { timeoutMs: 15_000 });
    const holding = runtime.sandbox.run("alice", "k", "import time\ntime.sleep(14)");
    await sleep(300);
    const queued = await runtime.runs.submit("alice", "k", { code: "never = True", timeoutMs: 1_000 });

    await short.pollUntil(finished("k", queued.runId), 40_000);
    const done = await runtime.runs.get("alice", "k", queued.runId);
    assert.equal(done.status, "error");
    assert.equal(done.error?.code, "RUN_UNDELIVERABLE");
    await holding;
    const dead = await mq.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq.url, WaitTimeSeconds: 0 }));
    assert.equal((dead.Messages ?? []).length, 0, "the message was answered, not dead-lettered");
    assert.equal(
      (await runtime.sandbox.run("alice", "k", "'never' in globals()")).data[0]?.["text/plain"],
      "False",
    );
  });

  it("never runs again a run another invocation took, and closes it as lost once that one's time is up", async () => {
    await runtime.sandbox.run("alice", "k", "taken = 0");
    const code = "taken += 1";
    // An invocation took the run and then vanished without a word (crash, Lambda timeout).
    await runs.claim("alice", "k", "vanished", sha256(code), "crashed-attempt", Date.now() + 1_500);
    await sendRaw(
      JSON.stringify({ action: "run", owner: "alice", kernelId: "k", runId: "vanished", code }),
      messageGroupOf("alice", "k"),
    );

    const first = await source.pollOnce();
    assert.equal(first.failed.length, 1, "while the holder may still report, the delivery waits");
    await source.pollUntil(finished("k", "vanished"));
    const done = await runtime.runs.get("alice", "k", "vanished");
    assert.equal(done.status, "error");
    assert.equal(done.error?.code, "RUN_LOST");
    assert.equal((await runtime.sandbox.run("alice", "k", "taken")).data[0]?.["text/plain"], "0");
  });

  it("answers a send the queue refuses with QUEUE_UNAVAILABLE and keeps no queued record", async () => {
    const broken = await createRuntime({
      ...config,
      queue: { ...config.queue, url: `${mq.endpoint}/000000000000/no-such-queue.fifo` },
    });
    await assert.rejects(broken.runs.submit("alice", "k", { code: "1", runId: "unsent" }), {
      code: "QUEUE_UNAVAILABLE",
    });
    await assert.rejects(runtime.runs.get("alice", "k", "unsent"), { code: "NOT_FOUND" });
  });

  it("starts and stops kernels for trusted producers", async () => {
    const group = messageGroupOf("bob", "by-queue");
    await sendRaw(JSON.stringify({ action: "start", owner: "bob", kernelId: "by-queue" }), group);
    await source.pollUntil(
      async () => (await runtime.sandbox.get("bob", "by-queue").catch(() => undefined))?.state === "idle",
    );
    await sendRaw(
      JSON.stringify({ action: "run", owner: "bob", kernelId: "by-queue", code: "7 * 6" }),
      group,
    );
    await sendRaw(JSON.stringify({ action: "stop", owner: "bob", kernelId: "by-queue" }), group);
    await source.pollUntil(
      async () => (await runtime.sandbox.get("bob", "by-queue").catch(() => undefined)) === undefined,
    );
    await assert.rejects(runtime.sandbox.get("bob", "by-queue"), { code: "NOT_FOUND" });
  });
});
