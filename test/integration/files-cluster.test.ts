import { startClusterHarness } from "../support/cluster.ts";
import { describeFileBehaviour } from "./files-behaviour.ts";

describeFileBehaviour("cluster", async (env) => {
  const harness = await startClusterHarness({ env });
  return { api: harness.server.api, stop: () => harness.stop() };
});
