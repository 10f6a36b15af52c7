import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { KernelClient } from "../lib/jupyter/client.ts";
import { ConnectionInfoSchema } from "../lib/jupyter/connection.ts";
import { jsonClient } from "./http-client.ts";
import { summarize, timed } from "./stats.ts";

/**
 * `npm run bench`: the `1+1` round trip on one kernel through (a) a persistent ZeroMQ client,
 * (b) fresh sockets per run, (c) the full path HTTP → local server → handler → DynamoDB → kernel,
 * interleaved round by round so all three see the same machine; plus kernel start latency.
 * The local API runs in this process, exactly as `npm start` assembles it.
 */
const ROUNDS = 300;
const WARMUP = 30;
const STARTS = 15;
const RUN = { timeoutMs: 10_000, interruptGraceMs: 2_000, maxOutputBytes: 1 << 20 };

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

  const persistent = new KernelClient(info);
  const paths: Record<string, () => Promise<unknown>> = {
    "a. raw ZeroMQ, persistent client": () => persistent.execute("1+1", RUN),
    "b. raw ZeroMQ, fresh sockets per run": async () => {
      const client = new KernelClient(info);
      try {
        await client.execute("1+1", RUN);
      } finally {
        client.close();
      }
    },
    "c. full path: HTTP → handler → DynamoDB → kernel": async () => {
      const res = await http.call("POST", "/kernels/bench/run", { code: "1+1" });
      const data = (res.body as { data?: Array<Record<string, unknown>> }).data;
      if (data?.[0]?.["text/plain"] !== "2") throw new Error(`unexpected: ${JSON.stringify(res.body)}`);
    },
  };
  const names = Object.keys(paths);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length] as string;
      const ms = await timed(paths[name] as () => Promise<unknown>);
      if (round >= WARMUP) samples[name]?.push(ms);
    }
  }
  persistent.close();

  const starts: number[] = [];
  const stops: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    starts.push(await timed(() => http.call("POST", "/kernels", { kernelId: `start-${i}` })));
    stops.push(await timed(() => http.call("DELETE", `/kernels/start-${i}`)));
  }

  const results = Object.fromEntries(names.map((name) => [name, summarize(samples[name] ?? [])]));
  const b = results[names[1] as string];
  const c = results[names[2] as string];
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    rounds: ROUNDS,
    runs: results,
    fullPathOverFreshSocketsP50Ms: Math.round(((c?.p50 ?? 0) - (b?.p50 ?? 0)) * 100) / 100,
    start: summarize(starts),
    stop: summarize(stops),
  };
  const md = [
    "# Benchmark: `1+1` round trip on one local kernel",
    "",
    `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}; ${ROUNDS} rounds after ${WARMUP} warm-up, the three paths interleaved round by round. The local API (dev HTTP server, handlers, dynalite persisted on disk) runs in the bench process, as \`npm start\` assembles it; (c) uses a keep-alive HTTP client.`,
    "",
    "| path | p50 ms | p95 ms |",
    "| --- | ---: | ---: |",
    ...names.map((name) => `| ${name} | ${results[name]?.p50} | ${results[name]?.p95} |`),
    "",
    `Full path minus fresh sockets at p50: **${report.fullPathOverFreshSocketsP50Ms} ms** (target ≤ 3 ms).`,
    "",
    `Kernel start through the API (\`POST /kernels\`, new id, ${STARTS} starts): p50 ${report.start.p50} ms, p95 ${report.start.p95} ms; stop (\`DELETE\`): p50 ${report.stop.p50} ms, p95 ${report.stop.p95} ms.`,
    "",
  ].join("\n");
  await writeFile(join(import.meta.dirname, "results", "local.json"), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(import.meta.dirname, "results", "local.md"), md);
  console.log(md);
} finally {
  http.close();
  await stack.close();
  await rm(stateDir, { recursive: true, force: true });
}
