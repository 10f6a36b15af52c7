import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { CLIENT_ENV, ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";

/**
 * `npm run bench` (Python client part): what the Python client and its working-directory mirror
 * cost per run on local kernels, measured by `bench/python_client.py` (the client's own venv)
 * against the dev stack served from this process: a plain HTTP run, a run through
 * `ServerlessPyBoxManager` with no cwd, with an unchanged 10-file cwd, and with one of those
 * files changed before each run, interleaved round by round. Writes bench/results/python-client.{json,md}.
 */

/** The promise: a mirror with nothing to send costs at most this much per run at p50. */
const UNCHANGED_MIRROR_TARGET_MS = 2;

interface Stats {
  n: number;
  p50: number;
  p95: number;
}
type Series = "plain_http" | "client_no_cwd" | "client_cwd_10_files" | "client_cwd_10_files_one_changed";

/** Runs the Python side against `url`; resolves with the JSON it printed. */
function measure(url: string): Promise<Record<Series, Stats>> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      join(CLIENT_ENV.dir, "bin", "python"),
      [join(import.meta.dirname, "python_client.py"), url],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0
        ? resolve(JSON.parse(out) as Record<Series, Stats>)
        : reject(new Error(`python_client.py exited with ${code}`)),
    );
  });
}

for (const env of [KERNEL_ENV, CLIENT_ENV]) await ensurePythonEnv(env);
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-python-client-"));
const stack = await startLocalStack(loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir }));
let series: Record<Series, Stats>;
try {
  series = await measure(stack.url);
} finally {
  await stack.close();
  await rm(stateDir, { recursive: true, force: true });
}

const round = (ms: number) => Math.round(ms * 100) / 100;
const overhead = {
  clientOverHttpP50Ms: round(series.client_no_cwd.p50 - series.plain_http.p50),
  unchangedMirrorP50Ms: round(series.client_cwd_10_files.p50 - series.client_no_cwd.p50),
  oneChangedFileP50Ms: round(series.client_cwd_10_files_one_changed.p50 - series.client_no_cwd.p50),
};
const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  backend: "local (bubblewrap where it works), dev server on loopback",
  code: "1+1",
  series,
  overhead,
  unchangedMirrorTargetMs: UNCHANGED_MIRROR_TARGET_MS,
};

const label: Record<Series, string> = {
  plain_http: "plain HTTP (httpx, keep-alive)",
  client_no_cwd: "`box.run` with no cwd",
  client_cwd_10_files: "`box.run`, 10-file cwd unchanged",
  client_cwd_10_files_one_changed: "`box.run`, 10-file cwd, one file changed",
};
const md = [
  "# Benchmark: the Python client and its working-directory mirror",
  "",
  `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}. \`1+1\` on local kernels through the dev server, one caller, ${series.plain_http.n} rounds after 20 warm-up, the four ways interleaved round by round. The 10 files are CSVs of about 20 KB; "changed" rewrites one of them before each run, so the mirror uploads it before the run.`,
  "",
  "| way | p50 ms | p95 ms |",
  "| --- | ---: | ---: |",
  ...(Object.keys(label) as Series[]).map(
    (key) => `| ${label[key]} | ${series[key].p50} | ${series[key].p95} |`,
  ),
  "",
  `The client over plain HTTP: ${overhead.clientOverHttpP50Ms} ms at p50. The mirror with nothing to send: ${overhead.unchangedMirrorP50Ms} ms (target ≤ ${UNCHANGED_MIRROR_TARGET_MS} ms). One changed file: ${overhead.oneChangedFileP50Ms} ms (one upload before the run).`,
  "",
].join("\n");

const results = join(import.meta.dirname, "results");
await writeFile(join(results, "python-client.json"), `${JSON.stringify(report, null, 2)}\n`);
await writeFile(join(results, "python-client.md"), md);
console.log(md);
