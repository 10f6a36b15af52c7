import { join } from "node:path";
import { type Config, setConfig } from "../config.ts";
import type { HttpLambda } from "../http/handler.ts";
import type { RouteFunction } from "../http/routes.ts";
import { logger } from "../logger.ts";
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
  /** Stops the HTTP server, every kernel, and DynamoDB; resolves with how many kernels it stopped. */
  close(): Promise<number>;
}

/**
 * Everything `npm start` serves, in-process: dynalite persisted under the state folder, the table,
 * the same Lambda handlers behind the dev HTTP server, and recovery of kernels left by an earlier
 * run. The configuration is fixed here, before any handler module reads it.
 */
export async function startLocalStack(config: Config): Promise<LocalStack> {
  const dynamo = await startEmbeddedDynamo(join(config.local.stateDir, "dynamodb"));
  setConfig({ ...config, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } });
  await ensureTable(dynamo.endpoint, config.table);

  const queue = new InProcessQueue({ maxReceiveCount: config.queue.maxReceives });
  const { getRuntime, setRunQueue } = await import("../runtime.ts");
  setRunQueue(queue);
  const handlers = await httpHandlers();
  queue.attach((await import("../../functions/queue.ts")).handler);
  const reap = (await import("../../functions/reaper.ts")).handler;
  const { sandbox, runs } = await getRuntime();
  const recovered = { ...(await sandbox.recover()), abandonedRuns: await runs.abandonUnfinished() };
  const server = await startDevServer(handlers, { port: config.port });
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
    async close() {
      clearInterval(reaper);
      await server.close();
      await queue.close();
      const stopped = await sandbox.stopAll();
      await dynamo.close();
      return stopped;
    },
  };
}

/**
 * The deployed HTTP functions' handlers, imported only once the config is fixed: each entry file
 * builds its runtime from the config at import.
 */
export async function httpHandlers(): Promise<Record<RouteFunction, HttpLambda>> {
  return {
    start: (await import("../../functions/start.ts")).handler,
    get: (await import("../../functions/get.ts")).handler,
    run: (await import("../../functions/run.ts")).handler,
    stop: (await import("../../functions/stop.ts")).handler,
    enqueue: (await import("../../functions/enqueue.ts")).handler,
    result: (await import("../../functions/result.ts")).handler,
  };
}
