import { join } from "node:path";
import { type Config, setConfig } from "../config.ts";
import type { HttpLambda } from "../http/handler.ts";
import type { RouteFunction } from "../http/routes.ts";
import type { SandboxService } from "../sandbox/service.ts";
import { ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "./dynamodb.ts";
import { startDevServer } from "./server.ts";

/** The API, its DynamoDB and its service, running in this process. */
export interface LocalStack {
  url: string;
  sandbox: SandboxService;
  /** Kernels found from an earlier run of this state folder. */
  recovered: { reattached: number; cleaned: number };
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

  const { getSandbox } = await import("../runtime.ts");
  const handlers: Record<RouteFunction, HttpLambda> = {
    start: (await import("../../functions/start.ts")).handler,
    get: (await import("../../functions/get.ts")).handler,
    run: (await import("../../functions/run.ts")).handler,
    stop: (await import("../../functions/stop.ts")).handler,
  };
  const sandbox = getSandbox();
  const recovered = await sandbox.recover();
  const server = await startDevServer(handlers, { port: config.port });
  return {
    url: server.url,
    sandbox,
    recovered,
    async close() {
      await server.close();
      const stopped = await sandbox.stopAll();
      await dynamo.close();
      return stopped;
    },
  };
}
