import { startLocalApi } from "../support/local-api.ts";
import { describeFileBehaviour } from "./files-behaviour.ts";

describeFileBehaviour("local", async (env) => {
  const server = await startLocalApi(env);
  return { api: server.api, stop: () => server.stop() };
});
