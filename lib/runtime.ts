import { randomUUID } from "node:crypto";
import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { Backend } from "./backends/port.ts";
import type { Config } from "./config.ts";
import { ConfigError } from "./errors.ts";
import type { QueueClient } from "./queue/port.ts";
import { AsyncRuns } from "./sandbox/async-runs.ts";
import { RunExecutor } from "./sandbox/run-executor.ts";
import type { RunQueue } from "./sandbox/run-queue.ts";
import { SandboxService } from "./sandbox/service.ts";
import { createDocumentClient, createDynamoClient } from "./store/dynamodb.ts";
import { KernelStore } from "./store/kernel-store.ts";
import { PoolStore } from "./store/pool-store.ts";
import { RunStore } from "./store/run-store.ts";
import { TenancyStore } from "./store/tenancy-store.ts";

/**
 * The backend the configuration names. Each backend is imported only when chosen, and the bundler
 * replaces `process.env.PYBOX_BUNDLED_BACKEND` with the deployed backend (see `infra/bundling.ts`),
 * so a Lambda bundle carries the code of that backend alone. Unbundled (tests, `npm start`) it is
 * undefined and every backend is available.
 */
export async function createBackend(config: Config): Promise<Backend> {
  if (
    config.backend === "local" &&
    (process.env.PYBOX_BUNDLED_BACKEND === undefined || process.env.PYBOX_BUNDLED_BACKEND === "local")
  ) {
    const { localBackendFrom } = await import("./backends/local/from-config.ts");
    return localBackendFrom(config);
  }
  if (
    config.backend === "gateway" &&
    (process.env.PYBOX_BUNDLED_BACKEND === undefined || process.env.PYBOX_BUNDLED_BACKEND === "gateway")
  ) {
    const { gatewayBackendFrom } = await import("./backends/gateway/from-config.ts");
    return gatewayBackendFrom(config);
  }
  if (
    config.backend === "cluster" &&
    (process.env.PYBOX_BUNDLED_BACKEND === undefined || process.env.PYBOX_BUNDLED_BACKEND === "cluster")
  ) {
    const { clusterBackendFrom } = await import("./backends/cluster/from-config.ts");
    return clusterBackendFrom(config);
  }
  throw new ConfigError(`PYBOX_BACKEND=${config.backend}, but this bundle was built for another backend`);
}

/**
 * The configured backend, traced when tracing is on. The bundler replaces
 * `process.env.PYBOX_BUNDLED_TRACING` with the deployment's choice (see `infra/bundling.ts`), so a
 * bundle without tracing drops the tracer's code; unbundled (tests, `npm start`) the config decides.
 */
async function servedBackend(config: Config): Promise<Backend> {
  const backend = await createBackend(config);
  if (config.tracing && process.env.PYBOX_BUNDLED_TRACING !== "off") {
    const { tracedBackend } = await import("./tracing.ts");
    return tracedBackend(backend);
  }
  return backend;
}

/** What the functions that only queue and read runs need: no backend. */
export interface RequestRuntime {
  config: Config;
  runs: AsyncRuns;
}

/** Everything one container serves with: kernels, queued runs and their execution. */
export interface Runtime extends RequestRuntime {
  sandbox: SandboxService;
  executor: RunExecutor;
  /** Where queued runs go and are handed back: SQS, or the dev server's in-process queue. */
  queue: QueueClient;
  /** The one DynamoDB client, shared with Powertools idempotency in the queue consumer. */
  dynamo: DynamoDBClient;
}

/**
 * Wires config, stores, backend and queue into one runtime. An entry file builds its own from the
 * validated config at module scope; the dev server and tests build theirs the same way and hand
 * it to the handlers. Nothing is kept here: two runtimes in one process are independent.
 */
export async function createRuntime(config: Config, queue?: QueueClient): Promise<Runtime> {
  const { dynamo, documents, kernels, results } = createStores(config);
  const runQueue = queue ?? lazySqsQueue(config);
  const sandbox = new SandboxService(kernels, await servedBackend(config), config, {
    pool: {
      records: new PoolStore(documents, config.table),
      // One message per claim, in the pool's own FIFO group: refills run one at a time, none merged.
      refill: () => runQueue.send({ action: "refill" }, randomUUID()),
    },
    tenancy: {
      records: new TenancyStore(documents, config.table),
      policy: config.gateway?.sharedHost ?? "refuse",
    },
  });
  const runs = new AsyncRuns(results, kernels, runQueue, config);
  const executor = new RunExecutor(results, sandbox, config);
  return { config, sandbox, runs, executor, queue: runQueue, dynamo };
}

/**
 * The runtime of `POST …/runs` and `GET …/runs/{runId}`: stores and the queue, never a backend,
 * so their bundles carry no backend code (the bundler drops what only `createRuntime` reaches).
 */
export function createRequestRuntime(config: Config, queue?: RunQueue): RequestRuntime {
  const { kernels, results } = createStores(config);
  return { config, runs: new AsyncRuns(results, kernels, queue ?? lazySqsQueue(config), config) };
}

function createStores(config: Config) {
  const dynamo = createDynamoClient(config.dynamodb);
  const documents = createDocumentClient(dynamo);
  return {
    dynamo,
    documents,
    kernels: new KernelStore(documents, config.table, config.recordTtlSeconds),
    results: new RunStore(documents, config.table, config.asyncRun.resultTtlSeconds),
  };
}

/** SQS, loaded on the first queue call: functions that never enqueue never pay for its client. */
function lazySqsQueue(config: Config): QueueClient {
  let loaded: Promise<QueueClient> | undefined;
  const load = () => {
    loaded ??= import("./queue/sqs.ts").then(({ SqsRunQueue }) => new SqsRunQueue(config.queue));
    return loaded;
  };
  return {
    send: async (message, deduplicationId) => (await load()).send(message, deduplicationId),
    retryLater: async (receiptHandle, delaySeconds) => (await load()).retryLater(receiptHandle, delaySeconds),
  };
}
