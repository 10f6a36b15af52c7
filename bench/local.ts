import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { ConnectionInfoSchema } from "../lib/jupyter/connection.ts";
import { jsonClient } from "./http-client.ts";
import { runRoundTripBench } from "./roundtrip.ts";

/** `npm run bench` (local part): round trips on one local kernel; the API runs in this process as `npm start` assembles it. */
await ensurePythonEnv(KERNEL_ENV);
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-"));
const stack = await startLocalStack(loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir }));
const http = jsonClient(stack.url);
try {
  await http.call("POST", "/kernels", { kernelId: "bench" });
  const [dir] = await readdir(join(stateDir, "kernels"));
  const info = ConnectionInfoSchema.parse(
    JSON.parse(await readFile(join(stateDir, "kernels", dir ?? "", "connection.json"), "utf8")),
  );
  await runRoundTripBench({
    name: "local",
    title: "`1+1` round trip on one local kernel",
    setting:
      "The local API (dev HTTP server, handlers, dynalite persisted on disk on its own thread) runs in the bench process, as `npm start` assembles it.",
    http,
    info,
  });
} finally {
  http.close();
  await stack.close();
  await rm(stateDir, { recursive: true, force: true });
}
