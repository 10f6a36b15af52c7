import { readdir, readFile, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { KernelClient } from "../lib/jupyter/client.ts";
import { ConnectionInfoSchema } from "../lib/jupyter/connection.ts";
import { startLocalApi } from "../test/support/local-api.ts";
import { jsonClient } from "./http-client.ts";
import { summarize } from "./stats.ts";

/** The load of the issue: 50 clients on 10 kernels for 60 s (override with LOAD_SECONDS). */
const CLIENTS = 50;
const KERNELS = 10;
const SECONDS = Number(process.env.LOAD_SECONDS ?? 60);
const RUN = {
  timeoutMs: 10_000,
  interruptGraceMs: 2_000,
  maxOutputBytes: 1 << 20,
  maxOutputEntryBytes: 1 << 20,
};

/** Mixed cells an analysis agent sends: arithmetic, printing, pandas, a loop, an error. */
const MIX: Array<{ code: string; status: "ok" | "error" }> = [
  { code: "1 + 1", status: "ok" },
  { code: "print('row ' * 200)", status: "ok" },
  { code: "import pandas as pd\npd.DataFrame({'a': range(200), 'b': range(200)}).describe()", status: "ok" },
  { code: "sum(i * i for i in range(20_000))", status: "ok" },
  { code: "squares = [i * i for i in range(5_000)]\nlen(squares)", status: "ok" },
  { code: "{'k': 1}['missing']", status: "error" },
];

interface Tally {
  latencies: number[];
  errors: string[];
  /** `client:seq` of every run the client got an answer for. */
  answered: string[];
}

/**
 * `npm run bench:load`: CLIENTS concurrent clients run mixed cells on KERNELS kernels for SECONDS
 * through the local server (a separate process, as `npm start`), each cell also appending its own
 * `client:seq` to a ledger in its kernel; then the kernels' ledgers are read to prove that every
 * answered run ran exactly once and nothing ran unanswered. The same load then goes over raw,
 * persistent ZeroMQ clients on the same kernels: the floor the service's overhead is measured on.
 */
await ensurePythonEnv(KERNEL_ENV);
const server = await startLocalApi({ POWERTOOLS_LOG_LEVEL: "ERROR" });
const admin = jsonClient(server.api.baseUrl);
/** One keep-alive HTTP connection per client, as 50 separate agents would hold. */
const clientsHttp = Array.from({ length: CLIENTS }, () => jsonClient(server.api.baseUrl));
try {
  const kernels = Array.from({ length: KERNELS }, (_, i) => `load-${i}`);
  for (const kernelId of kernels) {
    await admin.call("POST", "/kernels", { kernelId });
    await admin.call("POST", `/kernels/${kernelId}/run`, { code: "__ledger = []" });
  }

  const http = await drive(async (client, seq, cell) => {
    const kernelId = kernels[client % KERNELS] as string;
    const code = `__ledger.append('${client}:${seq}')\n${cell.code}`;
    const res = await clientsHttp[client]?.call("POST", `/kernels/${kernelId}/run`, { code });
    if (res?.status !== 200) return `HTTP ${res?.status}: ${JSON.stringify(res?.body).slice(0, 200)}`;
    const status = (res.body as { status?: string }).status;
    return status === cell.status ? undefined : `status ${status}, expected ${cell.status}`;
  });
  const ledger = await readLedgers(kernels);
  const lost = http.answered.filter((id) => (ledger.get(id) ?? 0) === 0);
  const duplicated = [...ledger].filter(([, n]) => n > 1).map(([id]) => id);
  const unanswered = [...ledger.keys()].filter((id) => !http.answered.includes(id));

  const refs = await kernelConnections(server.stateDir);
  const sockets = Array.from({ length: CLIENTS }, (_, client) => refs[client % refs.length])
    .filter((info) => info !== undefined)
    .map((info) => new KernelClient(info));
  // One cell at a time per kernel, as the service's lease keeps them: queued executes would be
  // aborted by the kernel after another client's error (stop_on_error), which is not a floor.
  const turns = new Map<number, Promise<unknown>>();
  const raw = await drive(async (client, _seq, cell) => {
    const kernel = client % refs.length;
    const turn = (turns.get(kernel) ?? Promise.resolve()).then(() =>
      sockets[client]?.execute(cell.code, RUN),
    );
    turns.set(
      kernel,
      turn.catch(() => undefined),
    );
    const result = await turn;
    return result?.status === cell.status ? undefined : `status ${result?.status}, expected ${cell.status}`;
  });
  for (const socket of sockets) socket.close();

  await report({ http, raw, lost, duplicated, unanswered });
} finally {
  admin.close();
  for (const client of clientsHttp) client.close();
  await server.stop();
}

/** Runs the mix from CLIENTS concurrent loops for SECONDS; returns latencies, errors, answered ids. */
async function drive(
  send: (client: number, seq: number, cell: (typeof MIX)[number]) => Promise<string | undefined>,
): Promise<Tally> {
  const tally: Tally = { latencies: [], errors: [], answered: [] };
  const deadline = Date.now() + SECONDS * 1_000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      await sleep(client * 10);
      for (let seq = 0; Date.now() < deadline; seq++) {
        const cell = MIX[(client + seq) % MIX.length] as (typeof MIX)[number];
        const started = performance.now();
        try {
          const error = await send(client, seq, cell);
          tally.latencies.push(performance.now() - started);
          tally.answered.push(`${client}:${seq}`);
          if (error) tally.errors.push(error);
        } catch (error) {
          tally.errors.push(String(error));
        }
      }
    }),
  );
  return tally;
}

/** How many times each `client:seq` appears in the kernels' ledgers. */
async function readLedgers(kernels: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const kernelId of kernels) {
    const res = await admin.call("POST", `/kernels/${kernelId}/run`, { code: "print('\\n'.join(__ledger))" });
    const text = String(
      (res.body as { data?: Array<Record<string, unknown>> }).data?.[0]?.["text/plain"] ?? "",
    );
    for (const id of text.split("\n").filter(Boolean)) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** The connection files of the server's kernels (for the raw ZeroMQ floor on the same kernels). */
async function kernelConnections(stateDir: string) {
  const root = join(stateDir, "kernels");
  const infos = [];
  for (const dir of await readdir(root)) {
    const text = await readFile(join(root, dir, "connection.json"), "utf8").catch(() => undefined);
    if (text) infos.push(ConnectionInfoSchema.parse(JSON.parse(text)));
  }
  return infos;
}

async function report(outcome: {
  http: Tally;
  raw: Tally;
  lost: string[];
  duplicated: string[];
  unanswered: string[];
}): Promise<void> {
  const { http, raw } = outcome;
  const figures = (tally: Tally) => ({
    runs: tally.latencies.length,
    errors: tally.errors.length,
    throughputPerSecond: Math.round((tally.latencies.length / SECONDS) * 10) / 10,
    latencyMs: summarize(tally.latencies),
  });
  const result = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    clients: CLIENTS,
    kernels: KERNELS,
    seconds: SECONDS,
    http: figures(http),
    rawZeroMq: figures(raw),
    lostRuns: outcome.lost.length,
    duplicatedRuns: outcome.duplicated.length,
    ranUnanswered: outcome.unanswered.length,
    firstErrors: [...http.errors, ...raw.errors].slice(0, 5),
  };
  const row = (name: string, f: ReturnType<typeof figures>) =>
    `| ${name} | ${f.runs} | ${f.errors} | ${f.throughputPerSecond} | ${f.latencyMs.p50} | ${f.latencyMs.p95} | ${f.latencyMs.p99} |`;
  const md = [
    "# Benchmark: load through the local server",
    "",
    `${result.date}, ${result.machine.cpus} × ${result.machine.model}, Node ${result.machine.node}. ${CLIENTS} concurrent clients (one keep-alive connection each) run a mix of cells (arithmetic, a print, a pandas describe, a loop, a list, a KeyError) on ${KERNELS} kernels (${CLIENTS / KERNELS} clients per kernel, so runs queue for their kernel's lease) for ${SECONDS} s through the local server (its own process, as \`npm start\`). Then the same load over raw persistent ZeroMQ clients on the same kernels, one cell at a time per kernel as the service's lease keeps them (queue waits included in both).`,
    "",
    "| path | runs | errors | runs/s | p50 ms | p95 ms | p99 ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    row("full path (HTTP → handler → DynamoDB lease → kernel)", result.http),
    row("raw ZeroMQ floor, same kernels", result.rawZeroMq),
    "",
    `Every cell appends its own \`client:seq\` to a ledger in its kernel; after the HTTP phase the ledgers show **${result.lostRuns} lost** (answered but not run), **${result.duplicatedRuns} duplicated** (run twice) and **${result.ranUnanswered} run without an answer**.`,
    ...(result.firstErrors.length > 0 ? ["", `First errors: ${result.firstErrors.join("; ")}`] : []),
    "",
  ].join("\n");
  await writeFile(join(import.meta.dirname, "results", "load.json"), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(import.meta.dirname, "results", "load.md"), md);
  console.log(md);
}
