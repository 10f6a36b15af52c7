import type { Config } from "../../lib/config.ts";
import { httpHandlers } from "../../lib/dev/local-stack.ts";
import { startDevServer } from "../../lib/dev/server.ts";
import { createRuntime, type Runtime } from "../../lib/runtime.ts";
import { ApiClient } from "./api.ts";

/** The product's HTTP API served from the test's own process. */
export interface InProcessApi {
  api: ApiClient;
  /** The runtime the handlers use (its sandbox, stores, backend). */
  runtime: Runtime;
  /** Stops the HTTP server, then every kernel of the runtime's backend in the store. */
  close(): Promise<void>;
}

/**
 * Serves the HTTP API from this process exactly as `npm start` does (the same Lambda handlers
 * behind the dev HTTP server, each request a payload 2.0 event), but with the configuration the
 * test gives, so the store can be pointed at any DynamoDB endpoint (say a fault-injecting proxy in
 * front of dynalite) and the backend at any peer. The runtime is the test's own, handed in.
 */
export async function startInProcessApi(config: Config): Promise<InProcessApi> {
  const runtime = await createRuntime(config);
  const server = await startDevServer(httpHandlers(runtime), { port: 0 });
  return {
    api: new ApiClient(server.url),
    runtime,
    async close() {
      await server.close();
      await runtime.sandbox.stopAll();
    },
  };
}
