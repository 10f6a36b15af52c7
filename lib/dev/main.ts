import { probeSandbox } from "../backends/local/sandbox.ts";
import { type Config, loadConfig, NPM_START_DEFAULTS } from "../config.ts";
import { PortInUseError, StateDirLockedError } from "../errors.ts";
import type { SandboxService } from "../sandbox/service.ts";
import { startLocalStack } from "./local-stack.ts";
import { provideSandboxTools } from "./prerequisites.ts";
import { ensurePythonEnv, kernelEnvOf } from "./python-env.ts";
import { lockStateDir } from "./state-lock.ts";

/**
 * `npm start`: the whole API on loopback, through the same handlers Lambda runs, with DynamoDB
 * embedded and kernels as local processes. Ctrl-C stops the server and its kernels.
 */
async function main(): Promise<void> {
  const config = loadConfig(undefined, NPM_START_DEFAULTS);
  await holdStateDir(config.local.stateDir);
  if (config.backend === "local" && config.local.sandbox !== "off") await provideSandboxTools();
  const kernelEnv = kernelEnvOf(config.local.python);
  if (kernelEnv) await ensurePythonEnv(kernelEnv);

  if (config.backend === "local") await reportIsolation(config);
  const stack = await startLocalStack(config).catch((error: unknown) => {
    if (!(error instanceof PortInUseError)) throw error;
    console.error(`Cannot start: ${error.message}`);
    process.exit(1);
  });
  if (config.backend === "gateway") await reportSharedHost(stack.sandbox, config);
  const { reattached, cleaned, abandonedRuns } = stack.recovered;
  if (reattached + cleaned > 0) {
    console.log(
      `Found kernels from an earlier run: ${reattached} re-attached, ${cleaned} dead ones cleaned up.`,
    );
  }
  if (abandonedRuns > 0) {
    console.log(
      `Closed ${abandonedRuns} queued run(s) of the earlier run as RUN_LOST: its queue was in memory.`,
    );
  }
  console.log(
    `pybox-serverless listening on ${stack.url} (backend: ${config.backend}, state: ${config.local.stateDir})`,
  );
  console.log(`Try: curl -s -X POST ${stack.url}/kernels -d '{"kernelId":"demo"}' && \\`);
  console.log(`     curl -s -X POST ${stack.url}/kernels/demo/run -d '{"code":"print(1+1)"}'`);

  void stack.warmed.then((started) => {
    if (config.pool.size > 0)
      console.log(`Warm pool ready: ${started} kernel(s) started (PYBOX_POOL_SIZE=${config.pool.size}).`);
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping the server and its kernels...`);
    const stopped = await stack.close();
    console.log(`Stopped ${stopped} kernel(s). Bye.`);
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

/**
 * One server per state folder: a second would crash on the first's embedded DynamoDB. Held until
 * this process exits, however it exits; a held folder ends this one with a message, not a trace.
 */
async function holdStateDir(stateDir: string): Promise<void> {
  try {
    const lock = await lockStateDir(stateDir);
    process.on("exit", () => lock.release());
  } catch (error) {
    if (!(error instanceof StateDirLockedError)) throw error;
    console.error(`Cannot start: ${error.message}`);
    process.exit(1);
  }
}

/**
 * A gateway that runs every kernel as a process of its own user on one host lets one caller's code
 * read another's files: say so at start-up (a warning where sharing is allowed), and what this
 * server does about it.
 */
async function reportSharedHost(sandbox: SandboxService, config: Config): Promise<void> {
  const reason = await sandbox.sharedHost().catch(() => undefined);
  if (!reason) return;
  if (config.gateway?.sharedHost === "allow") {
    console.warn(`WARNING: ${reason}; PYBOX_GATEWAY_SHARED_HOST=allow lets every caller's kernels share it.`);
  } else {
    console.log(
      `Note: ${reason}; this server serves the first caller to start a kernel, and refuses others.`,
    );
  }
}

/**
 * The local backend runs model-written code on this machine: say how it is confined, and say it
 * loudly when it is not.
 */
async function reportIsolation(config: Config): Promise<void> {
  const probe = await probeSandbox(config.local.sandbox);
  if (probe.sandbox) {
    const { memoryBytes, processes, cpuSeconds } = config.local.limits;
    console.log(
      `Kernels run in bubblewrap: no network, read-only host, private /tmp; ${memoryBytes / 1024 ** 2} MiB memory, ${processes} processes, ${cpuSeconds} s CPU each.`,
    );
    return;
  }
  const line = "!".repeat(78);
  console.warn(
    [
      line,
      "!! WARNING: kernels are NOT isolated. Code they run can read and write your files,",
      "!! reach the network and see your processes, with your rights.",
      `!! Why: ${probe.reason}`,
      "!! Fix: install bubblewrap (apt-get install bubblewrap), or set PYBOX_LOCAL_SANDBOX=bwrap to require it.",
      line,
    ].join("\n"),
  );
}

await main();
