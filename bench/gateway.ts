import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, GATEWAY_ENV, KERNEL_ENV, TOOLS_ENV } from "../lib/dev/python-env.ts";
import { startGateway } from "../test/support/gateway.ts";
import { jsonClient } from "./http-client.ts";
import { summarize, timed } from "./stats.ts";

/**
 * `npm run bench` (gateway part): on one Enterprise Gateway kernel, our path (HTTP → handler →
 * DynamoDB → gateway websocket) against pybox's own `RemotePyBox.run` on the same kernel,
 * alternating run by run, for `1+1` and a pandas display. Ours runs twice over: as a warm function
 * instance keeps the kernel's websocket between runs (the default), and as a cold one opens it
 * afresh for each run (`PYBOX_KEEP_CONNECTIONS_MS=0`, a second API on a kernel of its own).
 */
const ROUNDS = 100;
const WARMUP = 10;
const CASES = {
  "1+1": "1+1",
  "pandas display": "pd.DataFrame({'x': range(5), 'y': list('abcde')})",
};

for (const env of [KERNEL_ENV, GATEWAY_ENV, TOOLS_ENV]) await ensurePythonEnv(env);
const gateway = await startGateway("enterprise");
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-gw-"));
const freshStateDir = await mkdtemp(join(tmpdir(), "pybox-bench-gw-fresh-"));
const settings = {
  PORT: "0",
  PYBOX_BACKEND: "gateway",
  PYBOX_GATEWAY_URL: gateway.url,
  PYBOX_GATEWAY_TOKEN: gateway.token,
};
const stack = await startLocalStack(loadConfig({ ...settings, PYBOX_STATE_DIR: stateDir }));
const freshStack = await startLocalStack(
  loadConfig({ ...settings, PYBOX_STATE_DIR: freshStateDir, PYBOX_KEEP_CONNECTIONS_MS: "0" }),
);
const http = jsonClient(stack.url);
const freshHttp = jsonClient(freshStack.url);
let driver: ReturnType<typeof spawn> | undefined;
try {
  const runner = (client: typeof http) => async (code: string) => {
    const res = await client.call("POST", "/kernels/bench/run", { code });
    if ((res.body as { status?: string }).status !== "ok")
      throw new Error(`unexpected: ${JSON.stringify(res.body)}`);
  };
  const ours = runner(http);
  const oursFresh = runner(freshHttp);
  for (const client of [http, freshHttp]) await client.call("POST", "/kernels", { kernelId: "bench" });
  await ours("import pandas as pd");
  await oursFresh("import pandas as pd");
  const kernelId = (
    (await http.call("POST", "/kernels/bench/run", { code: "import os\nos.environ['KERNEL_ID']" })).body as {
      data: Array<Record<string, string>>;
    }
  ).data[0]?.["text/plain"]?.replaceAll("'", "");
  if (!kernelId) throw new Error("no gateway kernel id");

  const pybox = spawn(
    join(TOOLS_ENV.dir, "bin", "python"),
    [join(import.meta.dirname, "pybox_remote.py"), gateway.url, gateway.token, kernelId],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  driver = pybox;
  const lines = createInterface({ input: pybox.stdout })[Symbol.asyncIterator]();
  await lines.next();
  const theirs = async (code: string): Promise<number> => {
    pybox.stdin.write(`${JSON.stringify({ code })}\n`);
    const { value } = await lines.next();
    const answer = JSON.parse(String(value)) as { ms: number; ok: boolean };
    if (!answer.ok) throw new Error(`pybox run failed for ${code}`);
    return answer.ms;
  };

  type Summary = ReturnType<typeof summarize>;
  const results: Record<
    string,
    { ours: Summary; oursFresh: Summary; pybox: Summary; ratio: number; freshRatio: number }
  > = {};
  const ratio = (a: Summary, b: Summary) => Math.round((a.p50 / b.p50) * 100) / 100;
  for (const [name, code] of Object.entries(CASES)) {
    const mine: number[] = [];
    const fresh: number[] = [];
    const pyboxes: number[] = [];
    for (let round = 0; round < WARMUP + ROUNDS; round++) {
      const a = await timed(() => ours(code));
      const c = await timed(() => oursFresh(code));
      const b = await theirs(code);
      if (round >= WARMUP) {
        mine.push(a);
        fresh.push(c);
        pyboxes.push(b);
      }
    }
    const [o, f, p] = [summarize(mine), summarize(fresh), summarize(pyboxes)];
    results[name] = { ours: o, oursFresh: f, pybox: p, ratio: ratio(o, p), freshRatio: ratio(f, p) };
  }
  pybox.stdin.end();

  const report = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    gateway: "jupyter_enterprise_gateway 3.3.0 (local kernels), loopback",
    rounds: ROUNDS,
    results,
  };
  const md = [
    "# Benchmark: gateway path against pybox's RemotePyBox.run, one Enterprise Gateway kernel",
    "",
    `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}; ${ROUNDS} runs each after ${WARMUP} warm-up, ours (kept websocket), ours (fresh websocket) and pybox's taking turns on one gateway. Ours is the full path (keep-alive HTTP → dev server → handler → DynamoDB lease → gateway websocket): "kept" as a warm function instance runs it (the kernel's websocket kept from the run before; one kept over a second would first be proven alive with a \`kernel_info_request\`), "fresh" as a cold one (\`PYBOX_KEEP_CONNECTIONS_MS=0\`, its own kernel on the same gateway). pybox's is \`RemotePyBox.run\` in its own Python process, on our first kernel. Target: ours (kept) ≤ 0.4 × pybox.`,
    "",
    "| code | ours kept p50 ms | p95 | ours fresh p50 ms | p95 | pybox p50 ms | p95 | kept / pybox | fresh / pybox |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...Object.entries(results).map(
      ([name, r]) =>
        `| ${name} | ${r.ours.p50} | ${r.ours.p95} | ${r.oursFresh.p50} | ${r.oursFresh.p95} | ${r.pybox.p50} | ${r.pybox.p95} | ${r.ratio} | ${r.freshRatio} |`,
    ),
    "",
  ].join("\n");
  await writeFile(
    join(import.meta.dirname, "results", "gateway.json"),
    `${JSON.stringify(report, null, 2)}\n`,
  );
  await writeFile(join(import.meta.dirname, "results", "gateway.md"), md);
  console.log(md);
} finally {
  driver?.kill();
  http.close();
  freshHttp.close();
  await stack.close();
  await freshStack.close();
  await gateway.stop();
  await rm(stateDir, { recursive: true, force: true });
  await rm(freshStateDir, { recursive: true, force: true });
}
