import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, GATEWAY_ENV, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { ApiClient } from "../test/support/api.ts";
import { startGateway } from "../test/support/gateway.ts";
import { summarize, timed } from "./stats.ts";

/**
 * `npm run bench` (files part): on the local backend and on a real Enterprise Gateway, through the
 * full path (keep-alive HTTP → dev server → handler → DynamoDB lease → kernel), the throughput of
 * uploading and downloading a 1 MB file (one request each way) and a 20 MB file (4 MiB chunks and
 * ranged reads); and what a run's artifacts cost: `1+1` on a kernel whose working directory holds
 * 1,000 files against the same on a kernel whose working directory is empty, interleaved run by run.
 * Writes bench/results/files.{json,md} (`bench/summary.ts` takes its figures into summary.json).
 */
const CHUNK = 4 * 1024 * 1024;
const SIZES = { "1 MB": 1_000_000, "20 MB": 20_000_000 } as const;
const ROUNDS: Record<keyof typeof SIZES, number> = { "1 MB": 20, "20 MB": 3 };
const RUN_ROUNDS = 200;
const RUN_WARMUP = 20;
const CROWD = 1_000;
/** The target: the artifacts add at most this much to a run's p50 with 1,000 files. */
const ARTIFACTS_TARGET_MS = 2;

type Stats = ReturnType<typeof summarize>;

/** One backend's figures. */
interface BackendFigures {
  transfer: Record<string, { upload: Stats & { mbps: number }; download: Stats & { mbps: number } }>;
  runs: { emptyDir: Stats; crowdedDir: Stats; overheadP50Ms: number };
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const mbps = (bytes: number, ms: number) => Math.round((bytes / 1e6 / (ms / 1000)) * 100) / 100;

function expect(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench check failed: ${what}`);
}

async function upload(api: ApiClient, kernelId: string, path: string, bytes: Buffer): Promise<void> {
  if (bytes.length <= CHUNK) {
    const res = await api.putFile(kernelId, path, bytes);
    expect(res.status === 200 || res.status === 201, `PUT ${path}: ${res.status} ${res.text}`);
    return;
  }
  for (let start = 0; start < bytes.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, bytes.length) - 1;
    const res = await api.putFile(kernelId, path, bytes.subarray(start, end + 1), {
      contentRange: { start, end, total: bytes.length },
    });
    const expected = end + 1 === bytes.length ? [200, 201] : [202];
    expect(expected.includes(res.status), `PUT ${path} ${start}-${end}: ${res.status} ${res.text}`);
  }
}

async function download(api: ApiClient, kernelId: string, path: string, size: number): Promise<Buffer> {
  if (size <= CHUNK) {
    const res = await api.getFile(kernelId, path);
    expect(res.status === 200, `GET ${path}: ${res.status} ${res.text.slice(0, 200)}`);
    return res.bytes;
  }
  const parts: Buffer[] = [];
  for (let start = 0; start < size; start += CHUNK) {
    const end = Math.min(start + CHUNK, size) - 1;
    const res = await api.getFile(kernelId, path, { range: { start, end } });
    expect(res.status === 206, `GET ${path} ${start}-${end}: ${res.status} ${res.text.slice(0, 200)}`);
    parts.push(res.bytes);
  }
  return Buffer.concat(parts);
}

async function runOk(api: ApiClient, kernelId: string, code: string): Promise<void> {
  const res = await api.run(kernelId, code);
  expect(res.status === 200 && res.body.status === "ok", `run on ${kernelId}: ${res.text.slice(0, 300)}`);
}

/** The figures of one backend, whose API is at `api`; kernels start in fresh folders under `scratch`. */
async function measure(api: ApiClient, scratch: string): Promise<BackendFigures> {
  const dirs = await Promise.all(
    ["bench", "empty", "crowded"].map((name) => mkdtemp(join(scratch, `${name}-`))),
  );
  const [benchDir, emptyDir, crowdedDir] = dirs as [string, string, string];
  for (const [kernelId, cwd] of [
    ["bench", benchDir],
    ["empty", emptyDir],
    ["crowded", crowdedDir],
  ] as const) {
    const res = await api.start({ kernelId, cwd });
    expect(res.status === 201 || res.status === 200, `start ${kernelId}: ${res.status} ${res.text}`);
  }

  const transfer: BackendFigures["transfer"] = {};
  for (const [label, size] of Object.entries(SIZES) as Array<[keyof typeof SIZES, number]>) {
    const bytes = randomBytes(size);
    const path = `bench-${size}.bin`;
    await upload(api, "bench", path, bytes);
    const ups: number[] = [];
    const downs: number[] = [];
    for (let round = 0; round < ROUNDS[label]; round++) {
      ups.push(await timed(() => upload(api, "bench", path, bytes)));
      let got: Buffer = Buffer.alloc(0);
      downs.push(
        await timed(async () => {
          got = await download(api, "bench", path, size);
        }),
      );
      expect(sha256(got) === sha256(bytes), `${label} download is the uploaded bytes`);
    }
    const up = summarize(ups);
    const down = summarize(downs);
    transfer[label] = {
      upload: { ...up, mbps: mbps(size, up.p50) },
      download: { ...down, mbps: mbps(size, down.p50) },
    };
  }

  await runOk(
    api,
    "crowded",
    `import os\nfor i in range(${CROWD}):\n    open(f'f{i:04d}.txt', 'w').write(str(i))`,
  );
  const listed = await api.listFiles("crowded");
  expect(listed.status === 200 && (listed.body?.files.length ?? 0) >= CROWD - 1, "the crowded folder lists");
  const samples: Record<"empty" | "crowded", number[]> = { empty: [], crowded: [] };
  for (let round = 0; round < RUN_WARMUP + RUN_ROUNDS; round++) {
    const order = round % 2 === 0 ? (["empty", "crowded"] as const) : (["crowded", "empty"] as const);
    for (const kernelId of order) {
      const ms = await timed(() => runOk(api, kernelId, "1+1"));
      if (round >= RUN_WARMUP) samples[kernelId].push(ms);
    }
  }
  const empty = summarize(samples.empty);
  const crowded = summarize(samples.crowded);
  for (const kernelId of ["bench", "empty", "crowded"]) await api.stop(kernelId);
  return {
    transfer,
    runs: {
      emptyDir: empty,
      crowdedDir: crowded,
      overheadP50Ms: Math.round((crowded.p50 - empty.p50) * 100) / 100,
    },
  };
}

/** Runs `measure` against the dev stack assembled with `env` in this process. */
async function onStack(env: Record<string, string>): Promise<BackendFigures> {
  const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-files-"));
  // Kernels' folders live outside the state folder (the server refuses a cwd inside it).
  const scratch = await mkdtemp(join(tmpdir(), "pybox-bench-files-cwd-"));
  const stack = await startLocalStack(loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir, ...env }));
  try {
    return await measure(new ApiClient(stack.url, "bench"), scratch);
  } finally {
    await stack.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

for (const env of [KERNEL_ENV, GATEWAY_ENV]) await ensurePythonEnv(env);
const figures: Record<string, BackendFigures> = {};
figures.local = await onStack({});
const gateway = await startGateway("enterprise");
try {
  figures.gateway = await onStack({
    PYBOX_BACKEND: "gateway",
    PYBOX_GATEWAY_URL: gateway.url,
    PYBOX_GATEWAY_TOKEN: gateway.token,
  });
} finally {
  await gateway.stop();
}

const report = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
  gateway: "jupyter_enterprise_gateway (local kernels), loopback",
  sizes: SIZES,
  rounds: ROUNDS,
  runRounds: RUN_ROUNDS,
  crowd: CROWD,
  artifactsTargetMs: ARTIFACTS_TARGET_MS,
  backends: figures,
};

const rows = Object.entries(figures).flatMap(([backend, f]) =>
  Object.entries(f.transfer).map(
    ([label, t]) =>
      `| ${backend} | ${label} | ${t.upload.p50} | ${t.upload.mbps} | ${t.download.p50} | ${t.download.mbps} |`,
  ),
);
const runRows = Object.entries(figures).map(
  ([backend, f]) =>
    `| ${backend} | ${f.runs.emptyDir.p50} | ${f.runs.emptyDir.p95} | ${f.runs.crowdedDir.p50} | ${f.runs.crowdedDir.p95} | ${f.runs.overheadP50Ms} |`,
);
const md = [
  "# Benchmark: files in and out of a kernel, and the cost of a run's artifacts",
  "",
  `${report.date}, ${report.machine.cpus} × ${report.machine.model}, Node ${report.machine.node}. Full path: keep-alive HTTP → dev server → handler → DynamoDB lease → kernel (local: ZeroMQ; gateway: Enterprise Gateway websocket, loopback). A 1 MB file moves in one request each way; a 20 MB file in 4 MiB chunks (\`Content-Range\`) up and 4 MiB ranged reads down. Time per whole file; MB/s = 10⁶ bytes / s at p50. Rounds: ${ROUNDS["1 MB"]} (1 MB), ${ROUNDS["20 MB"]} (20 MB); every download checked by sha256.`,
  "",
  "| backend | file | upload p50 ms | upload MB/s | download p50 ms | download MB/s |",
  "| --- | --- | ---: | ---: | ---: | ---: |",
  ...rows,
  "",
  `Artifacts: \`1+1\` through the full path on a kernel whose working directory holds ${CROWD.toLocaleString("en")} files, against the same on a kernel whose working directory is empty, ${RUN_ROUNDS} runs each after ${RUN_WARMUP} warm-up, alternating. The difference at p50 is what a crowded working directory adds to a run's artifacts (target ≤ ${ARTIFACTS_TARGET_MS} ms); the tracker on against off, on one kernel over ZeroMQ, is in [artifacts.md](artifacts.md).`,
  "",
  "| backend | empty dir p50 ms | p95 ms | 1,000 files p50 ms | p95 ms | overhead p50 ms |",
  "| --- | ---: | ---: | ---: | ---: | ---: |",
  ...runRows,
  "",
].join("\n");

const results = join(import.meta.dirname, "results");
await writeFile(join(results, "files.json"), `${JSON.stringify(report, null, 2)}\n`);
await writeFile(join(results, "files.md"), md);

console.log(md);
