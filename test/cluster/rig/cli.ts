import { spawn } from "node:child_process";
import { openSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { signalZero as alive } from "../../../lib/backends/process.ts";
import { rigCacheDir } from "./build.ts";
import { startRig } from "./rig.ts";

/*
 * `npm run rig:cluster -- up | down | build`: the tests' cluster rig, by hand. `up` starts it in a
 * background process of its own and prints the environment with which `npm start` serves cluster
 * mode on it; `down` stops exactly that process, which stops everything it started.
 */

const STATE = join(rigCacheDir(), "rig-up.json");
const LOG = join(rigCacheDir(), "rig-up.log");

interface UpState {
  pid: number;
  dir: string;
  env: Record<string, string>;
  adminKubeconfig: string;
}

async function readState(): Promise<UpState | undefined> {
  try {
    return JSON.parse(await readFile(STATE, "utf8")) as UpState;
  } catch {
    return undefined;
  }
}

function print(state: UpState): void {
  console.log("The cluster rig is up. Serve the API on it with:\n");
  const line = Object.entries(state.env)
    .map(([name, value]) => `${name}='${value}'`)
    .join(" \\\n  ");
  console.log(`  ${line} \\\n  npm start\n`);
  console.log(`Admin kubeconfig (for a look with kubectl): ${state.adminKubeconfig}`);
  console.log(`Logs of its servers: ${join(state.dir, "logs")}`);
  console.log("Stop it with: npm run rig:cluster -- down");
}

async function up(): Promise<void> {
  const running = await readState();
  if (running && alive(running.pid)) {
    print(running);
    return;
  }
  await mkdir(rigCacheDir(), { recursive: true });
  await rm(STATE, { force: true });
  const out = openSync(LOG, "w");
  const child = spawn(process.execPath, [...process.execArgv, import.meta.filename, "serve"], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  child.unref();
  console.log(
    `Starting the cluster rig (pid ${child.pid}; a first run builds it, which takes minutes; log: ${LOG})...`,
  );
  for (;;) {
    const state = await readState();
    if (state) {
      print(state);
      return;
    }
    if (child.pid === undefined || !alive(child.pid)) {
      console.error(`The rig did not start:\n${(await readFile(LOG, "utf8")).slice(-3000)}`);
      process.exitCode = 1;
      return;
    }
    await sleep(500);
  }
}

async function down(): Promise<void> {
  const state = await readState();
  if (!state || !alive(state.pid)) {
    console.log("No cluster rig of this checkout is running.");
    await rm(STATE, { force: true });
    return;
  }
  process.kill(state.pid, "SIGTERM");
  while (alive(state.pid)) await sleep(200);
  await rm(STATE, { force: true });
  console.log(`Stopped the cluster rig (pid ${state.pid}).`);
}

/** The background process of `up`: runs the rig until SIGTERM, then stops all of it. */
async function serve(): Promise<void> {
  const rig = await startRig();
  const state: UpState = {
    pid: process.pid,
    dir: rig.dir,
    env: rig.backendEnv,
    adminKubeconfig: rig.adminKubeconfig,
  };
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await rig.stop();
    await rm(STATE, { force: true });
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  await writeFile(STATE, JSON.stringify(state, null, 2));
}

const command = process.argv[2];
if (command === "up") await up();
else if (command === "down") await down();
else if (command === "serve") await serve();
else if (command === "build") {
  const { buildRig } = await import("./build.ts");
  console.log(await buildRig());
} else {
  console.error("usage: npm run rig:cluster -- up | down | build");
  process.exitCode = 2;
}
