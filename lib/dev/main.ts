import { join } from "node:path";
import { getConfig, loadConfig, setConfig } from "../config.ts";
import type { HttpLambda } from "../http/handler.ts";
import type { RouteFunction } from "../http/routes.ts";
import { ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "./dynamodb.ts";
import { ensurePythonEnv, VENV_DIR } from "./python-env.ts";
import { startDevServer } from "./server.ts";

/**
 * `npm start`: the whole API on loopback, through the same handlers Lambda runs, with DynamoDB
 * embedded and kernels as local processes. Ctrl-C stops the server and its kernels.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  if (config.local.python.startsWith(VENV_DIR)) await ensurePythonEnv();

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
  const { reattached, cleaned } = await sandbox.recover();
  if (reattached + cleaned > 0) {
    console.log(
      `Found kernels from an earlier run: ${reattached} re-attached, ${cleaned} dead ones cleaned up.`,
    );
  }

  const server = await startDevServer(handlers, { port: getConfig().port });
  console.log(
    `pybox-serverless listening on ${server.url} (backend: local, state: ${config.local.stateDir})`,
  );
  console.log(`Try: curl -s -X POST ${server.url}/kernels -d '{"kernelId":"demo"}' && \\`);
  console.log(`     curl -s -X POST ${server.url}/kernels/demo/run -d '{"code":"print(1+1)"}'`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping the server and its kernels...`);
    await server.close();
    const stopped = await sandbox.stopAll();
    await dynamo.close();
    console.log(`Stopped ${stopped} kernel(s). Bye.`);
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

await main();
