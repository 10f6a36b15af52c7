import { join } from "node:path";
import { type Config, HTTP_INVOCATION_TIMEOUT_MS } from "../config.ts";
import { type HttpLambda, httpFunctionOf } from "../http/handler.ts";
import { ROUTES, type RouteFunction } from "../http/routes.ts";
import { type EventSink, type StreamRequest, streamRun } from "../http/run-stream.ts";
import { logger } from "../logger.ts";
import { runtimeConsumer } from "../queue/consumer.ts";
import { createRuntime, type Runtime } from "../runtime.ts";
import { reaperHandler } from "../sandbox/reaper.ts";
import type { SandboxService } from "../sandbox/service.ts";
import { ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "./dynamodb.ts";
import { lambdaContext } from "./lambda-context.ts";
import { InProcessQueue } from "./queue.ts";
import { startDevServer } from "./server.ts";

/** How often the dev server runs the reaper, as the deployed schedule would. */
const REAPER_INTERVAL_MS = 60_000;

/** The API, its DynamoDB and its service, running in this process. */
export interface LocalStack {
  url: string;
  sandbox: SandboxService;
  /** The in-process run queue (`POST /kernels/{id}/runs` lands here). */
  queue: InProcessQueue;
  /** Kernels (and queued runs, closed as lost) found from an earlier run of this state folder. */
  recovered: { reattached: number; cleaned: number; abandonedRuns: number };
  /** Resolves with how many kernels the first fill of the warm pool started (0 with no pool). */
  warmed: Promise<number>;
  /** Stops the HTTP server, every kernel, and DynamoDB; resolves with how many kernels it stopped. */
  close(): Promise<number>;
}

/**
 * Everything `npm start` serves, in-process: dynalite persisted under the state folder, the table,
 * the same Lambda handlers behind the dev HTTP server, and recovery of kernels left by an earlier
 * run. One runtime, built here from the config and handed to every handler.
 */
export async function startLocalStack(config: Config): Promise<LocalStack> {
  const dynamo = await startEmbeddedDynamo(join(config.local.stateDir, "dynamodb"));
  const devConfig: Config = { ...config, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } };
  await ensureTable(dynamo.endpoint, config.table);

  const queue = new InProcessQueue({ maxReceiveCount: config.queue.maxReceives });
  const runtime = await createRuntime(devConfig, queue);
  const handlers = httpHandlers(runtime);
  queue.attach(runtimeConsumer(runtime));
  const reap = reaperHandler(runtime);
  const { sandbox, runs } = runtime;
  const recovered = { ...(await sandbox.recover()), abandonedRuns: await runs.abandonUnfinished() };
  const stream = (request: StreamRequest, sink: EventSink) =>
    streamRun(sandbox, runtime.config, request, sink, Date.now() + HTTP_INVOCATION_TIMEOUT_MS);
  const server = await startDevServer(handlers, { port: config.port, stream }).catch(
    async (error: unknown) => {
      // Nothing is served: leave the recovered kernels running for the next start, close the rest.
      await queue.close();
      await dynamo.close();
      throw error;
    },
  );
  // The pool fills while the server already answers: a start before it is warm starts cold.
  const warmed = sandbox.refillPool().catch((error: unknown) => {
    logger.warn("warm pool not filled", { error: error as Error });
    return 0;
  });
  const reaper = setInterval(() => {
    reap({}, lambdaContext("reaper", REAPER_INTERVAL_MS)).catch((error: unknown) =>
      logger.warn("reaper run failed", { error: error as Error }),
    );
  }, REAPER_INTERVAL_MS);
  reaper.unref();
  return {
    url: server.url,
    sandbox,
    queue,
    recovered,
    warmed,
    async close() {
      clearInterval(reaper);
      await server.close();
      await warmed;
      await queue.close();
      const stopped = await sandbox.stopAll();
      await dynamo.close();
      return stopped;
    },
  };
}

/**
 * The deployed HTTP functions' handlers, each the catalogue route served with `runtime`, exactly as
 * its entry file serves it with the runtime it builds.
 */
export function httpHandlers(runtime: Runtime): Record<RouteFunction, HttpLambda> {
  const names = [...new Set(ROUTES.map((route) => route.function))];
  return Object.fromEntries(names.map((name) => [name, httpFunctionOf(name, runtime)])) as Record<
    RouteFunction,
    HttpLambda
  >;
}
