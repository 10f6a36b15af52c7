import { type Config, setConfig } from "../../lib/config.ts";
import { startDevServer } from "../../lib/dev/server.ts";
import type { Runtime } from "../../lib/runtime.ts";
import { ApiClient } from "./api.ts";

/** The product's HTTP API served from the test's own process. */
export interface InProcessApi {
  api: ApiClient;
  /** The container's runtime the handlers use (its sandbox, stores, backend). */
  runtime: Runtime;
  /** Stops the HTTP server, then every kernel of the runtime's backend in the store. */
  close(): Promise<void>;
}

let started = false;

/**
 * Serves the HTTP API from this process exactly as `npm start` does (the same Lambda handlers
 * behind the dev HTTP server, each request a payload 2.0 event), but with the configuration the
 * test gives, so the store can be pointed at any DynamoDB endpoint (say a fault-injecting proxy in
 * front of dynalite) and the backend at any peer. Handlers keep their runtime in module state, as a
 * Lambda container does: one per test process.
 */
export async function startInProcessApi(config: Config): Promise<InProcessApi> {
  if (started) throw new Error("one in-process API per test process: the handlers' runtime is module state");
  started = true;
  setConfig(config);
  const { getRuntime } = await import("../../lib/runtime.ts");
  const { httpHandlers } = await import("../../lib/dev/local-stack.ts");
  const handlers = await httpHandlers();
  const runtime = await getRuntime();
  const server = await startDevServer(handlers, { port: 0 });
  return {
    api: new ApiClient(server.url),
    runtime,
    async close() {
      await server.close();
      await runtime.sandbox.stopAll();
    },
  };
}
