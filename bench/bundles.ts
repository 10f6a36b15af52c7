import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build, version as esbuildVersion, type Metafile } from "esbuild";
import {
  type DeployedBackend,
  esbuildOptions,
  IMPORTS_ZEROMQ,
  type LambdaArchitecture,
  PROJECT_ROOT,
  zeromqCopyCommand,
} from "../infra/bundling.ts";
import { FUNCTION_NAMES, type FunctionName } from "../lib/functions.ts";
import { writeKubeconfig } from "../test/support/cluster.ts";
import { percentile } from "./stats.ts";

/**
 * `npm run bench:bundles`: for each function and each backend a deployment can use, the size of
 * the minified bundle `infra/bundling.ts` makes (the same options the stack gives esbuild) and its
 * module initialisation time: a fresh `node` process imports the bundle, and the time from process
 * start to the end of that import is read from `performance.now()` (its origin is process start).
 */

const BACKENDS: readonly DeployedBackend[] = ["gateway", "cluster"];
/** 1 MB, decimal: the bundle without its source map and without the native zeromq package. */
const SIZE_TARGET_BYTES = 1_000_000;
const INIT_TARGET_MS = 150;
const ROUNDS = 11;
const RESULTS = join(PROJECT_ROOT, "bench", "results");

interface Contributor {
  package: string;
  bytes: number;
}

interface BundleResult {
  function: FunctionName;
  backend: DeployedBackend;
  bytes: number;
  importsZeromq: boolean;
  init: { p50: number; min: number; max: number; samples: number[] };
  meetsSize: boolean;
  meetsInit: boolean;
  /** Largest packages in the bundle by bytes of output, from esbuild's metafile. */
  top: Contributor[];
  /** Bytes of zod's locale files in the bundle (all of them come with `import { z } from "zod"`). */
  zodLocaleBytes: number;
}

/** The package an input belongs to (`node_modules/<pkg>`), or our own top-level folder. */
function owner(path: string): string {
  const match = path.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (match?.[1]) return match[1];
  return path.split("/").slice(0, 2).join("/");
}

function contributors(metafile: Metafile): { top: Contributor[]; zodLocaleBytes: number } {
  const output = Object.values(metafile.outputs).find((o) => o.entryPoint !== undefined);
  const byPackage = new Map<string, number>();
  let zodLocaleBytes = 0;
  for (const [path, input] of Object.entries(output?.inputs ?? {})) {
    byPackage.set(owner(path), (byPackage.get(owner(path)) ?? 0) + input.bytesInOutput);
    if (/node_modules\/zod\/.*\/locales\//.test(path)) zodLocaleBytes += input.bytesInOutput;
  }
  const top = [...byPackage]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 8)
    .map(([pkg, bytes]) => ({ package: pkg, bytes }));
  return { top, zodLocaleBytes };
}

/** One fresh process importing `module`; milliseconds from process start to the import's end. */
function initTime(runner: string, module: string, env: NodeJS.ProcessEnv): number {
  const out = execFileSync(process.execPath, ["--enable-source-maps", runner, pathToFileURL(module).href], {
    env,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const ms = Number(out.trim().split("\n").at(-1));
  if (!Number.isFinite(ms)) throw new Error(`no time from ${module}: ${out}`);
  return ms;
}

const hostArchitecture: LambdaArchitecture = process.arch === "arm64" ? "arm64" : "x86_64";
const work = await mkdtemp(join(tmpdir(), "pybox-bench-bundles-"));
try {
  const runner = join(work, "runner.mjs");
  await writeFile(
    runner,
    [
      "await import(process.argv[2]);",
      'process.stdout.write(String(performance.now()) + "\\n");',
      "process.exit(0);",
      "",
    ].join("\n"),
  );
  const empty = join(work, "empty.mjs");
  await writeFile(empty, "export {};\n");
  const kubeconfig = join(work, "kubeconfig.json");
  await writeKubeconfig(kubeconfig, "https://127.0.0.1:9", "bench");

  const baseEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    AWS_REGION: "us-east-1",
    PYBOX_TABLE: "pybox-bench",
    PYBOX_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/pybox-runs.fifo",
    PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: "x" }),
    POWERTOOLS_SERVICE_NAME: "pybox",
  };
  const envFor = (backend: DeployedBackend): NodeJS.ProcessEnv =>
    backend === "gateway"
      ? { ...baseEnv, PYBOX_BACKEND: "gateway", PYBOX_GATEWAY_URL: "http://127.0.0.1:9" }
      : { ...baseEnv, PYBOX_BACKEND: "cluster", PYBOX_KUBECONFIG: kubeconfig };

  // Bundle everything first, exactly as the stack does, then time the imports round by round.
  const bundles: Array<Omit<BundleResult, "init" | "meetsInit"> & { file: string }> = [];
  for (const backend of BACKENDS) {
    for (const name of FUNCTION_NAMES) {
      const outdir = join(work, backend, name);
      await mkdir(outdir, { recursive: true });
      const result = await build({
        ...esbuildOptions(join(PROJECT_ROOT, "functions", `${name}.ts`), outdir, backend),
        metafile: true,
      });
      const file = join(outdir, "index.mjs");
      const bytes = (await stat(file)).size;
      const importsZeromq = IMPORTS_ZEROMQ.test(await readFile(file, "utf8"));
      if (importsZeromq) {
        // What the stack's afterBundling hook does, for this machine's architecture.
        execFileSync("bash", ["-c", zeromqCopyCommand(hostArchitecture, PROJECT_ROOT, outdir)], {
          cwd: PROJECT_ROOT,
        });
      }
      bundles.push({
        function: name,
        backend,
        bytes,
        importsZeromq,
        meetsSize: bytes <= SIZE_TARGET_BYTES,
        ...contributors(result.metafile),
        file,
      });
    }
  }

  const samples = new Map<string, number[]>();
  const baseline: number[] = [];
  // One warm-up round puts the files in the page cache; it is not counted.
  for (let round = -1; round < ROUNDS; round++) {
    const t = initTime(runner, empty, baseEnv);
    if (round >= 0) baseline.push(t);
    for (const bundle of bundles) {
      const ms = initTime(runner, bundle.file, envFor(bundle.backend));
      if (round < 0) continue;
      const key = `${bundle.backend}/${bundle.function}`;
      samples.set(key, [...(samples.get(key) ?? []), ms]);
    }
  }

  const round1 = (value: number) => Math.round(value * 10) / 10;
  const results: BundleResult[] = bundles.map(({ file: _file, ...bundle }) => {
    const series = samples.get(`${bundle.backend}/${bundle.function}`) ?? [];
    const p50 = round1(percentile(series, 50));
    return {
      ...bundle,
      init: {
        p50,
        min: round1(Math.min(...series)),
        max: round1(Math.max(...series)),
        samples: series.map(round1),
      },
      meetsInit: p50 <= INIT_TARGET_MS,
    };
  });
  const baselineP50 = round1(percentile(baseline, 50));
  const date = new Date().toISOString();
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? "unknown CPU"}`;

  await writeFile(
    join(RESULTS, "bundles.json"),
    `${JSON.stringify(
      {
        date,
        machine,
        node: process.version,
        esbuild: esbuildVersion,
        rounds: ROUNDS,
        targets: { bytes: SIZE_TARGET_BYTES, initMs: INIT_TARGET_MS },
        baselineInitMs: baselineP50,
        results,
      },
      null,
      2,
    )}\n`,
  );

  const kb = (bytes: number) => (bytes / 1000).toFixed(0);
  const mark = (ok: boolean) => (ok ? "yes" : "**no**");
  const lines = [
    "# Benchmark: function bundles (size and module initialisation)",
    "",
    `${date}, ${machine}, Node ${process.version}, esbuild ${esbuildVersion}. Each bundle is built with`,
    "`esbuildOptions` of `infra/bundling.ts` (the options the stack deploys: ESM, minified, `keepNames`,",
    "external zeromq, `PYBOX_BUNDLED_BACKEND` defined). Size is the `.mjs` alone (no source map, no",
    `native zeromq package). Init is the median of ${ROUNDS} fresh \`node --enable-source-maps\` processes`,
    "importing the bundle (process start to import done, bundles interleaved round by round); a process",
    `importing an empty module takes **${baselineP50} ms** here, which is included. Lambda runs these on`,
    "a fraction of a vCPU at 1024 MB, so its cold init is longer than this machine's.",
    "",
    `Targets: bundle ≤ ${kb(SIZE_TARGET_BYTES)} kB, init ≤ ${INIT_TARGET_MS} ms.`,
    "",
    "| backend | function | bundle kB | ≤ 1 MB | init p50 ms (min–max) | ≤ 150 ms | imports zeromq |",
    "| --- | --- | ---: | :---: | ---: | :---: | :---: |",
    ...results.map(
      (r) =>
        `| ${r.backend} | ${r.function} | ${kb(r.bytes)} | ${mark(r.meetsSize)} | ${r.init.p50} (${r.init.min}–${r.init.max}) | ${mark(r.meetsInit)} | ${r.importsZeromq ? "yes" : "no"} |`,
    ),
    "",
  ];
  const over = results.filter((r) => !r.meetsSize);
  if (over.length > 0) {
    lines.push("## Largest contributors of the bundles over 1 MB", "");
    const seen = new Set<string>();
    for (const r of over) {
      // Functions of one backend share nearly all their code: show one per backend and size.
      const key = `${r.backend}:${r.top.map((t) => t.package).join(",")}`;
      if (seen.has(key)) continue;
      seen.add(key);
      lines.push(
        `**${r.backend} / ${r.function}** (${kb(r.bytes)} kB; zod locales alone ${kb(r.zodLocaleBytes)} kB):`,
        "",
        "| package | kB |",
        "| --- | ---: |",
        ...r.top.map((t) => `| ${t.package} | ${kb(t.bytes)} |`),
        "",
      );
    }
  }
  await writeFile(join(RESULTS, "bundles.md"), `${lines.join("\n")}`);

  for (const r of results) {
    console.log(
      `${r.backend.padEnd(8)} ${r.function.padEnd(8)} ${kb(r.bytes).padStart(5)} kB ${r.meetsSize ? "ok " : "OVER"}  init p50 ${String(r.init.p50).padStart(6)} ms ${r.meetsInit ? "ok" : "OVER"}${r.importsZeromq ? "  (zeromq)" : ""}`,
    );
  }
  console.log(`baseline (empty module): ${baselineP50} ms; results in bench/results/bundles.{json,md}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
