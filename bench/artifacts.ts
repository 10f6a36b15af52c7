import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import * as z from "zod";
import { LocalBackend } from "../lib/backends/local/local.ts";
import { loadConfig } from "../lib/config.ts";
import { ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { artifactsSetupCode } from "../lib/jupyter/artifacts.ts";
import { KernelClient } from "../lib/jupyter/client.ts";
import { evaluate, runCode, runSilently } from "../lib/jupyter/execution.ts";
import { summarize, timed } from "./stats.ts";

/**
 * `tsx bench/artifacts.ts`: what measuring a run's artifacts costs, on one local kernel whose
 * working directory holds 1,000 files, over ZeroMQ (the in-kernel cost is the same on every
 * transport; only the kernel's work differs between the modes, so no HTTP or DynamoDB noise is
 * added). The same kernel, the same request, round by round in turn:
 * - `off`: the tracker's hook unregistered (what a run cost before artifacts);
 * - `on`: the hook as the product installs it (inotify: only paths the run touched are looked at);
 * - `scan`: the hook with inotify taken away (the fallback: a full scan, an `lstat` per file).
 * Each mode runs `1+1` and a run that writes one file. Writes bench/results/artifacts.{json,md}
 * (`bench/summary.ts` takes its figures into summary.json).
 */
const CROWD = 1_000;
const ROUNDS = 200;
const WARMUP = 20;
/** The issue's target: measuring adds at most this much to a run's p50 with 1,000 files. */
const TARGET_MS = 2;
const LIMITS = {
  timeoutMs: 10_000,
  interruptGraceMs: 2_000,
  maxOutputBytes: 1024 * 1024,
  maxOutputEntryBytes: 1024 * 1024,
};
const MODES = ["off", "on", "scan"] as const;
type Mode = (typeof MODES)[number];
const CODES = { idle: "1+1", write: "open('out.txt', 'w').write('x')" } as const;

/** Switches the tracker's hook between the modes; installed in a module of its own, touching no user name. */
const SWITCH = `
def mode(name):
    from IPython import get_ipython
    tracker = sys.modules["_pybox"].artifacts
    events = get_ipython().events
    if tracker.hook in events.callbacks["post_run_cell"]:
        events.unregister("post_run_cell", tracker.hook)
    if name == "off":
        return
    if name == "scan":
        tracker.close()
        tracker.lib = None
    elif tracker.lib is None:
        tracker.lib = type(tracker).__init__.__globals__["libc"]()
        tracker.stale = True
    tracker.sync()
    events.register("post_run_cell", tracker.hook)


def cost(rounds):
    import time
    tracker = sys.modules["_pybox"].artifacts
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        tracker.report()
        took.append((time.perf_counter() - started) * 1e6)
    took.sort()
    return took[len(took) // 2]
`;
const INSTALL_SWITCH = `exec(${JSON.stringify(`import sys\n${SWITCH}\nsys.modules["_pybox_bench"] = type(sys)("_pybox_bench")\nsys.modules["_pybox_bench"].__dict__.update(mode=mode, cost=cost)`)}, {})`;

function expect(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench check failed: ${what}`);
}

await ensurePythonEnv(KERNEL_ENV);
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-artifacts-"));
const work = await mkdtemp(join(tmpdir(), "pybox-bench-artifacts-work-"));
for (let i = 0; i < CROWD; i++) await writeFile(join(work, `f${String(i).padStart(4, "0")}.txt`), String(i));
const config = loadConfig({ PYBOX_STATE_DIR: stateDir });
const backend = new LocalBackend({
  ...config.local,
  startTimeoutMs: config.startTimeoutMs,
  keepConnectionsMs: config.keepConnectionsMs,
});
const ref = await backend.start({ owner: "bench", kernelId: "artifacts", env: {}, cwd: work });
const client = new KernelClient(ref.connection);
const samples: Record<string, number[]> = {};
const inKernelUs: Partial<Record<Mode, number>> = {};
try {
  // As a start does: the root recorded, the tracker installed and its baseline taken.
  await runSilently(
    client,
    `__import__("sys").modules.setdefault("_pybox", type(__import__("sys"))("_pybox")).root = __import__("os").getcwd()\n${artifactsSetupCode()}\n${INSTALL_SWITCH}`,
    { timeoutMs: 10_000 },
  );
  const switchTo = (mode: Mode) =>
    runSilently(client, `__import__("sys").modules["_pybox_bench"].mode("${mode}")`, { timeoutMs: 10_000 });
  for (const mode of MODES) {
    await switchTo(mode);
    const write = (await runCode(client, CODES.write, LIMITS)).result;
    const idle = (await runCode(client, CODES.idle, LIMITS)).result;
    const reported = mode === "off" ? [] : ["out.txt"];
    expect(
      JSON.stringify(write.artifacts.map((a) => a.path)) === JSON.stringify(reported),
      `${mode}: the write is reported`,
    );
    expect(idle.artifacts.length === 0, `${mode}: 1+1 reports nothing`);
    if (mode !== "off") {
      inKernelUs[mode] = await evaluate(
        client,
        `__import__("sys").modules["_pybox_bench"].cost(200)`,
        z.number(),
        {
          timeoutMs: 30_000,
        },
      );
    }
  }
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    // A different order each round, so no mode always follows the same one.
    const order = [...MODES.slice(round % 3), ...MODES.slice(0, round % 3)];
    for (const mode of order) {
      await switchTo(mode);
      for (const [kind, code] of Object.entries(CODES)) {
        const ms = await timed(() => runCode(client, code, LIMITS));
        if (round < WARMUP) continue;
        const key = `${mode}.${kind}`;
        samples[key] = [...(samples[key] ?? []), ms];
      }
    }
  }
} finally {
  client.close();
  await backend.stop(ref);
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
}

const stats = Object.fromEntries(Object.entries(samples).map(([key, values]) => [key, summarize(values)]));
const at = (key: string) => stats[key]?.p50 ?? Number.NaN;
const overhead = (mode: Mode, kind: keyof typeof CODES) =>
  Math.round((at(`${mode}.${kind}`) - at(`off.${kind}`)) * 100) / 100;
const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  crowd: CROWD,
  rounds: ROUNDS,
  targetMs: TARGET_MS,
  runs: stats,
  overheadP50Ms: {
    idle: { on: overhead("on", "idle"), scan: overhead("scan", "idle") },
    write: { on: overhead("on", "write"), scan: overhead("scan", "write") },
  },
  inKernelHookP50Us: inKernelUs,
};

const row = (mode: Mode) =>
  `| ${mode} | ${at(`${mode}.idle`)} | ${stats[`${mode}.idle`]?.p95} | ${mode === "off" ? "—" : overhead(mode, "idle")} | ${at(`${mode}.write`)} | ${stats[`${mode}.write`]?.p95} | ${mode === "off" ? "—" : overhead(mode, "write")} | ${mode === "off" ? "—" : inKernelUs[mode]?.toFixed(1)} |`;
const md = [
  "# Benchmark: what measuring a run's artifacts costs",
  "",
  `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}. One local kernel over ZeroMQ, its working directory holding ${CROWD.toLocaleString("en")} files; ${ROUNDS} rounds after ${WARMUP} warm-up, each round every mode in turn (order rotating), each mode running \`${CODES.idle}\` and a run that writes one file (\`${CODES.write}\`). \`off\`: no measuring (the run as it was before artifacts); \`on\`: the tracker as the product installs it (inotify, then an \`lstat\` of each path the run touched); \`scan\`: the tracker without inotify (its fallback: an \`lstat\` of every file). Target: at most ${TARGET_MS} ms added to the p50 of \`1+1\`.`,
  "",
  "| mode | `1+1` p50 ms | p95 ms | added p50 ms | write p50 ms | p95 ms | added p50 ms | in-kernel report p50 µs |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...MODES.map(row),
  "",
].join("\n");

const results = join(import.meta.dirname, "results");
await writeFile(join(results, "artifacts.json"), `${JSON.stringify(report, null, 2)}\n`);
await writeFile(join(results, "artifacts.md"), md);
process.stdout.write(md);
