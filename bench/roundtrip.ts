import { writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { KernelClient } from "../lib/jupyter/client.ts";
import type { ConnectionInfo } from "../lib/jupyter/connection.ts";
import type { jsonClient } from "./http-client.ts";
import { summarize, timed } from "./stats.ts";

const ROUNDS = 300;
const WARMUP = 30;
const STARTS = 15;
const RUN = {
  timeoutMs: 10_000,
  interruptGraceMs: 2_000,
  maxOutputBytes: 1 << 20,
  maxOutputEntryBytes: 1 << 20,
};

/** What one backend's round-trip bench needs: its API, the sockets of its kernel `bench`, labels. */
export interface RoundTripBench {
  /** File name under bench/results (`<name>.json`, `<name>.md`). */
  name: string;
  title: string;
  /** How the API runs, for the report. */
  setting: string;
  http: ReturnType<typeof jsonClient>;
  /** Connection info of the kernel the API knows as `bench`. */
  info: ConnectionInfo;
}

/**
 * The `1+1` round trip on one kernel through (a) a persistent ZeroMQ client, (b) fresh sockets per
 * run, (c) the full path HTTP → handler → DynamoDB → kernel, interleaved round by round so all
 * three see the same machine; then start and stop latency through the API. Writes the results.
 */
export async function runRoundTripBench({ name, title, setting, http, info }: RoundTripBench): Promise<void> {
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
  const samples: Record<string, number[]> = Object.fromEntries(names.map((path) => [path, []]));
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    for (let i = 0; i < names.length; i++) {
      const path = names[(round + i) % names.length] as string;
      const ms = await timed(paths[path] as () => Promise<unknown>);
      if (round >= WARMUP) samples[path]?.push(ms);
    }
  }
  persistent.close();

  const starts: number[] = [];
  const stops: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    starts.push(await timed(() => http.call("POST", "/kernels", { kernelId: `start-${i}` })));
    stops.push(await timed(() => http.call("DELETE", `/kernels/start-${i}`)));
  }

  const results = Object.fromEntries(names.map((path) => [path, summarize(samples[path] ?? [])]));
  const persistentResult = results[names[0] as string];
  const fresh = results[names[1] as string];
  const full = results[names[2] as string];
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    rounds: ROUNDS,
    runs: results,
    fullPathOverFreshSocketsP50Ms: Math.round(((full?.p50 ?? 0) - (fresh?.p50 ?? 0)) * 100) / 100,
    fullPathOverPersistentP50Ms: Math.round(((full?.p50 ?? 0) - (persistentResult?.p50 ?? 0)) * 100) / 100,
    start: summarize(starts),
    stop: summarize(stops),
  };
  const md = [
    `# Benchmark: ${title}`,
    "",
    `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}; ${ROUNDS} rounds after ${WARMUP} warm-up, the three paths interleaved round by round. ${setting} (c) uses a keep-alive HTTP client.`,
    "",
    "| path | p50 ms | p95 ms |",
    "| --- | ---: | ---: |",
    ...names.map((path) => `| ${path} | ${results[path]?.p50} | ${results[path]?.p95} |`),
    "",
    `The full path keeps the kernel's sockets between runs, as a warm function instance does (\`PYBOX_KEEP_CONNECTIONS_MS\`). Full path minus the persistent client at p50 (HTTP, handler and DynamoDB lease, like for like): **${report.fullPathOverPersistentP50Ms} ms**; minus fresh sockets per run (what a stateless handler paid before): **${report.fullPathOverFreshSocketsP50Ms} ms** (target ≤ 3 ms for both).`,
    "",
    `Kernel start through the API (\`POST /kernels\`, new id, ${STARTS} starts): p50 ${report.start.p50} ms, p95 ${report.start.p95} ms; stop (\`DELETE\`): p50 ${report.stop.p50} ms, p95 ${report.stop.p95} ms.`,
    "",
  ].join("\n");
  await writeFile(
    join(import.meta.dirname, "results", `${name}.json`),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  await writeFile(join(import.meta.dirname, "results", `${name}.md`), md);
  console.log(md);
}
