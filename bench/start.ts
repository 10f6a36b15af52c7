import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { loadConfig } from "../lib/config.ts";
import { type LocalStack, startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, GATEWAY_ENV, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { startRig } from "../test/cluster/rig/rig.ts";
import { startGateway } from "../test/support/gateway.ts";
import { jsonClient } from "./http-client.ts";
import { summarize, timed } from "./stats.ts";

/**
 * `npm run bench` (starts): `POST /kernels` through the HTTP API, from nothing (no pool) and from
 * a warm pool, side by side on each backend: two APIs on the same peer, one with
 * `PYBOX_POOL_SIZE=2` and one without, taking turns start by start. Before each start the pool is
 * full again and the machine quiet for 2.5 s (as between bursts; a rig pod takes 2 s); each kernel is stopped after
 * its start (not timed). In AWS a refill runs on another function instance; here, in the same
 * process, its kernel's start competes with the next start for this machine's two cores.
 */
const POOL_SIZE = 2;
const TARGET_POOLED_P50_MS = 50;
const ROUNDS = { local: 15, gateway: 12, cluster: 8 } as const;
/** Pause before each start, for the previous one's refill and stop to finish. */
const SETTLE_MS = 2_500;

type Backend = keyof typeof ROUNDS;

/** One backend's two APIs, and how to end them. */
interface Pair {
  cold: LocalStack;
  pooled: LocalStack;
  note: string;
  close(): Promise<void>;
}

async function pairOn(env: Record<string, string>, note: string, stop: () => Promise<void>): Promise<Pair> {
  const dirs = await Promise.all([0, 1].map(() => mkdtemp(join(tmpdir(), "pybox-bench-start-"))));
  const [coldDir = "", pooledDir = ""] = dirs;
  const cold = await startLocalStack(loadConfig({ PORT: "0", PYBOX_STATE_DIR: coldDir, ...env }));
  const pooled = await startLocalStack(
    loadConfig({ PORT: "0", PYBOX_STATE_DIR: pooledDir, PYBOX_POOL_SIZE: String(POOL_SIZE), ...env }),
  );
  await pooled.warmed;
  return {
    cold,
    pooled,
    note,
    async close() {
      await pooled.close();
      await cold.close();
      await stop();
      await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
    },
  };
}

async function measure(backend: Backend, pair: Pair) {
  const clients = { cold: jsonClient(pair.cold.url), pooled: jsonClient(pair.pooled.url) };
  const samples: Record<"cold" | "pooled", number[]> = { cold: [], pooled: [] };
  try {
    for (let round = 0; round < ROUNDS[backend]; round++) {
      for (const kind of ["cold", "pooled"] as const) {
        // The pool full again and the machine quiet, as between bursts of starts (a refill message
        // and this fill may both add one: the reaper trims the pool back to its size).
        if (kind === "pooled") await pair.pooled.sandbox.refillPool();
        await sleep(SETTLE_MS);
        const client = clients[kind];
        const kernelId = `start-${round}`;
        let status = 0;
        samples[kind].push(
          await timed(async () => {
            status = (await client.call("POST", "/kernels", { kernelId, env: { BENCH: "1" } })).status;
          }),
        );
        if (status !== 201) throw new Error(`${backend} ${kind} start answered ${status}`);
        await client.call("DELETE", `/kernels/${kernelId}`);
      }
    }
  } finally {
    clients.cold.close();
    clients.pooled.close();
  }
  const cold = summarize(samples.cold);
  const pooled = summarize(samples.pooled);
  return {
    note: pair.note,
    cold,
    pooled,
    pooledOverColdP50: Math.round((pooled.p50 / cold.p50) * 1000) / 1000,
  };
}

for (const env of [KERNEL_ENV, GATEWAY_ENV]) await ensurePythonEnv(env);
const results: Partial<Record<Backend, Awaited<ReturnType<typeof measure>>>> = {};

/** Measures one backend's pair and closes it, printing the row as soon as it is known. */
async function bench(backend: Backend, pair: Pair): Promise<void> {
  try {
    const r = await measure(backend, pair);
    results[backend] = r;
    console.log(
      `${backend}: cold p50 ${r.cold.p50} ms, pooled p50 ${r.pooled.p50} ms (p95 ${r.pooled.p95} ms)`,
    );
  } finally {
    await pair.close();
  }
}

await bench(
  "local",
  await pairOn({}, "sandboxed local kernels (bubblewrap where available)", async () => {}),
);

const gateway = await startGateway("enterprise");
await bench(
  "gateway",
  await pairOn(
    { PYBOX_BACKEND: "gateway", PYBOX_GATEWAY_URL: gateway.url, PYBOX_GATEWAY_TOKEN: gateway.token },
    "Enterprise Gateway 3.x on this machine, default kernelspec",
    () => gateway.stop(),
  ),
);

const rig = await startRig();
await bench(
  "cluster",
  await pairOn(
    rig.backendEnv,
    "the cluster rig: real kube-apiserver, controller and monitor, EG's launcher, the kubelet doubled",
    () => rig.stop(),
  ),
);

const report = {
  date: new Date().toISOString(),
  machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}`,
  poolSize: POOL_SIZE,
  targetPooledP50Ms: TARGET_POOLED_P50_MS,
  backends: results,
};
const resultsDir = join(import.meta.dirname, "results");
await writeFile(join(resultsDir, "start.json"), `${JSON.stringify(report, null, 2)}\n`);
const rows = Object.entries(results).map(
  ([name, r]) =>
    `| ${name} | ${r.cold.p50} | ${r.cold.p95} | ${r.pooled.p50} | ${r.pooled.p95} | ${r.pooled.p50 <= TARGET_POOLED_P50_MS ? "met" : "not met"} | ${r.note} |`,
);
await writeFile(
  join(resultsDir, "start.md"),
  [
    "# Starts: cold and from the warm pool",
    "",
    `${report.date}, ${report.machine}. \`POST /kernels\` through the HTTP API (dev server, handlers, dynalite), cold and pooled taking turns on the same peer; pool size ${POOL_SIZE}, full before each pooled start. Target: pooled p50 ≤ ${TARGET_POOLED_P50_MS} ms.`,
    "",
    "| backend | cold p50 ms | cold p95 ms | pooled p50 ms | pooled p95 ms | target | setting |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n"),
);
console.log(rows.join("\n"));
