import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiClient } from "./api.ts";

const ROOT = join(import.meta.dirname, "..", "..");

/** A running `npm start` server in its own process, with its own state folder. */
export interface LocalApi {
  api: ApiClient;
  stateDir: string;
  /** The server's process id (the process that runs `lib/dev/main.ts`). */
  pid: number;
  /** Everything the server printed, for assertions on its messages. */
  output(): string;
  /** Stops the server (SIGTERM: it stops its kernels) and removes its state unless `keepState`. */
  stop(options?: { keepState?: boolean; signal?: NodeJS.Signals }): Promise<void>;
}

/**
 * Starts the local API server exactly as `npm start` does (same entry, real dynalite over HTTP,
 * real kernels) on a free loopback port. `env` is added to the server's environment.
 */
export async function startLocalApi(env: Record<string, string> = {}, stateDir?: string): Promise<LocalApi> {
  const dir = stateDir ?? (await mkdtemp(join(tmpdir(), "pybox-test-")));
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "lib", "dev", "main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: "0",
      PYBOX_STATE_DIR: dir,
      POWERTOOLS_LOG_LEVEL: "WARN",
      // No warm pool unless a test asks for one: its kernels would be counted, and load the machine.
      PYBOX_POOL_SIZE: "0",
      // The test gateways run kernels as local processes: tests of many callers on them opt in to
      // sharing as an operator would. The refusal has tests of its own.
      ...(env.PYBOX_BACKEND === "gateway" ? { PYBOX_GATEWAY_SHARED_HOST: "allow" } : {}),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 120_000);
      const check = () => {
        const match = /listening on (http:\/\/\S+)/.exec(output);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout.on("data", check);
      // `close`, not `exit`: by then everything it printed has been read.
      child.once("close", (code) => {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${output}`));
      });
    });
  } catch (error) {
    // A server that never started leaves neither a process nor a state folder of ours behind.
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    if (stateDir === undefined) await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    api: new ApiClient(url),
    stateDir: dir,
    pid: child.pid ?? 0,
    output: () => output,
    async stop(options = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill(options.signal ?? "SIGTERM");
        await exited;
      }
      if (!options.keepState) await rm(dir, { recursive: true, force: true });
    },
  };
}
