import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * `bench/results/summary.json`: the figures that matter, machine-readable, one line each
 * (`{metric, value, unit, target, met}`), derived from every bench's own results file. Run last by
 * `npm run bench`; a bench not run yet simply contributes nothing.
 */

/** One line of the summary; `target` and `met` are null where a figure has no target. */
export interface SummaryMetric {
  metric: string;
  value: number;
  unit: string;
  target: string | null;
  met: boolean | null;
}

const RESULTS = join(import.meta.dirname, "results");

type Json = Record<string, unknown>;

async function results(name: string): Promise<Json | undefined> {
  const text = await readFile(join(RESULTS, `${name}.json`), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as Json);
}

/** A number at a path of a results file (the files are ours; a missing figure is skipped). */
function at(value: unknown, ...path: string[]): number | undefined {
  let node = value;
  for (const key of path) node = node && typeof node === "object" ? (node as Json)[key] : undefined;
  return typeof node === "number" ? node : undefined;
}

function metric(
  name: string,
  value: number | undefined,
  unit: string,
  target?: { le?: number; ge?: number },
) {
  if (value === undefined) return [];
  const bound = target?.le ?? target?.ge;
  const met =
    target?.le !== undefined ? value <= target.le : target?.ge !== undefined ? value >= target.ge : null;
  return [
    {
      metric: name,
      value,
      unit,
      target: bound === undefined ? null : `${target?.le !== undefined ? "<=" : ">="} ${bound}`,
      met,
    },
  ];
}

/** The round trip benches of the ZeroMQ backends (local kernels, the cluster test rig). */
function roundTrip(prefix: string, r: Json | undefined): SummaryMetric[] {
  if (!r) return [];
  return [
    ...metric(
      `${prefix}.run_p50`,
      at(r, "runs", "c. full path: HTTP → handler → DynamoDB → kernel", "p50"),
      "ms",
    ),
    ...metric(
      `${prefix}.raw_zeromq_fresh_sockets_p50`,
      at(r, "runs", "b. raw ZeroMQ, fresh sockets per run", "p50"),
      "ms",
    ),
    ...metric(`${prefix}.overhead_over_fresh_sockets_p50`, at(r, "fullPathOverFreshSocketsP50Ms"), "ms", {
      le: 3,
    }),
    ...metric(`${prefix}.overhead_over_persistent_client_p50`, at(r, "fullPathOverPersistentP50Ms"), "ms", {
      le: 3,
    }),
    ...metric(`${prefix}.start_p50`, at(r, "start", "p50"), "ms"),
  ];
}

/** The HTTP path's runs/s over raw ZeroMQ's in the same load run, to two decimals. */
function loadRatio(r: Json | undefined): number | undefined {
  const http = at(r, "http", "throughputPerSecond");
  const raw = at(r, "rawZeroMq", "throughputPerSecond");
  return http === undefined || !raw ? undefined : Math.round((http / raw) * 100) / 100;
}

const [local, cluster, gateway, load, bundles, files, artifacts, pythonClient, start] = await Promise.all(
  ["local", "cluster", "gateway", "load", "bundles", "files", "artifacts", "python-client", "start"].map(
    results,
  ),
);

const summary: SummaryMetric[] = [
  ...roundTrip("local", local),
  ...roundTrip("cluster", cluster),
  ...metric("gateway.run_p50_over_pybox", at(gateway, "results", "1+1", "ratio"), "ratio", { le: 0.4 }),
  ...metric("gateway.run_p50", at(gateway, "results", "1+1", "ours", "p50"), "ms"),
  ...metric(
    "gateway.fresh_websocket_run_p50_over_pybox",
    at(gateway, "results", "1+1", "freshRatio"),
    "ratio",
  ),
  ...["local", "gateway", "cluster"].flatMap((backend) => [
    ...metric(`start.${backend}.pooled_p50`, at(start, "backends", backend, "pooled", "p50"), "ms", {
      le: at(start, "targetPooledP50Ms") ?? Number.POSITIVE_INFINITY,
    }),
    ...metric(`start.${backend}.pooled_p95`, at(start, "backends", backend, "pooled", "p95"), "ms"),
    ...metric(`start.${backend}.cold_p50`, at(start, "backends", backend, "cold", "p50"), "ms"),
    ...metric(`start.${backend}.cold_p95`, at(start, "backends", backend, "cold", "p95"), "ms"),
  ]),
  ...metric("load.http_runs_per_second", at(load, "http", "throughputPerSecond"), "runs/s"),
  ...metric("load.raw_zeromq_runs_per_second", at(load, "rawZeroMq", "throughputPerSecond"), "runs/s"),
  ...metric("load.http_over_raw_zeromq_runs_per_second", loadRatio(load), "ratio", { ge: 0.6 }),
  ...metric("load.http_p99", at(load, "http", "latencyMs", "p99"), "ms", { le: 1_000 }),
  ...metric("load.http_errors", at(load, "http", "errors"), "runs", { le: 0 }),
  ...metric("load.lost_runs", at(load, "lostRuns"), "runs", { le: 0 }),
  ...metric("load.duplicated_runs", at(load, "duplicatedRuns"), "runs", { le: 0 }),
  ...((bundles?.results as Json[] | undefined) ?? []).flatMap((bundle) => [
    ...metric(`bundles.${bundle.backend}.${bundle.function}.bytes`, at(bundle, "bytes"), "bytes", {
      le: at(bundles, "targets", "bytes") ?? Number.POSITIVE_INFINITY,
    }),
    ...metric(`bundles.${bundle.backend}.${bundle.function}.init_p50`, at(bundle, "init", "p50"), "ms", {
      le: at(bundles, "targets", "initMs") ?? Number.POSITIVE_INFINITY,
    }),
  ]),
  ...["local", "gateway"].flatMap((backend) =>
    ["1 MB", "20 MB"].flatMap((size) =>
      ["upload", "download"].flatMap((way) =>
        metric(
          `files.${backend}.${way}_${size.replace(" ", "")}`,
          at(files, "backends", backend, "transfer", size, way, "mbps"),
          "MB/s",
        ),
      ),
    ),
  ),
  ...["local", "gateway"].flatMap((backend) =>
    metric(
      `files.${backend}.artifacts_overhead_p50_1000_files`,
      at(files, "backends", backend, "runs", "overheadP50Ms"),
      "ms",
      {
        le: 2,
      },
    ),
  ),
  ...metric(
    "artifacts.local.tracker_overhead_p50_1000_files",
    at(artifacts, "overheadP50Ms", "idle", "on"),
    "ms",
    {
      le: 2,
    },
  ),
  ...metric(
    "artifacts.local.scan_fallback_overhead_p50_1000_files",
    at(artifacts, "overheadP50Ms", "idle", "scan"),
    "ms",
  ),
  ...metric("python_client.local.run_p50", at(pythonClient, "series", "client_no_cwd", "p50"), "ms"),
  ...metric(
    "python_client.local.over_plain_http_p50",
    at(pythonClient, "overhead", "clientOverHttpP50Ms"),
    "ms",
  ),
  ...metric(
    "python_client.local.mirror_unchanged_10_files_overhead_p50",
    at(pythonClient, "overhead", "unchangedMirrorP50Ms"),
    "ms",
    { le: 2 },
  ),
  ...metric(
    "python_client.local.mirror_one_changed_file_overhead_p50",
    at(pythonClient, "overhead", "oneChangedFileP50Ms"),
    "ms",
  ),
];

await writeFile(join(RESULTS, "summary.json"), `${JSON.stringify(summary, null, 2)}\n`);
console.log(
  `Wrote bench/results/summary.json: ${summary.length} figures, ${summary.filter((m) => m.met === false).length} off target.`,
);
