import type { MiddlewareObj } from "@middy/core";
import type { RunResult } from "./core/run-result.ts";

/** The CloudWatch namespace of the product's own metrics; the stack's alarms and dashboard read it. */
export const METRICS_NAMESPACE = "Pybox";

/** Every metric the product emits, by name: the code records them, the stack alarms on them. */
export const METRIC = {
  /** Runs that ended, by how: `ok`, `error` (the code raised), `timeout` (interrupted). */
  runsOk: "RunsOk",
  runsError: "RunsError",
  runsTimeout: "RunsTimeout",
  /** A run's own time in the kernel, ms. */
  runDuration: "RunDuration",
  /** Kernels started from nothing, and taken from the warm pool. */
  kernelStartsCold: "KernelStartsCold",
  kernelStartsPooled: "KernelStartsPooled",
  /** A start that made a kernel, from request to answer, ms. */
  startDuration: "StartDuration",
  /** Dead kernels a start brought back (`restarted: true`). */
  kernelsRevived: "KernelsRevived",
  /** Kernels in the warm pool after a reaper pass. */
  warmPoolSize: "WarmPoolSize",
  /** Starts that found the warm pool empty (and started cold). */
  warmPoolEmpty: "WarmPoolEmpty",
  /** How long a queued run waited in the queue before a consumer took it, ms. */
  queuedRunAge: "QueuedRunAge",
  /** Idle kernels the reaper stopped; kernels it found dead; running kernels no record pointed at. */
  kernelsReaped: "KernelsReaped",
  kernelsFoundDead: "KernelsFoundDead",
  orphansStopped: "OrphansStopped",
} as const;

/** A value recorded during an invocation, written at its end. */
interface Recorded {
  name: string;
  unit: "Count" | "Milliseconds";
  value: number;
}

/** What this container's current invocation recorded, not yet written. */
const pending: Recorded[] = [];

/**
 * Powertools Metrics (embedded metric format: a log line CloudWatch turns into metrics, no API
 * call), loaded on the first write: functions that record nothing (enqueue, result) never load it,
 * so it adds nothing to their cold start.
 */
let recorder: Promise<import("@aws-lambda-powertools/metrics").Metrics> | undefined;

function loadRecorder() {
  recorder ??= import("@aws-lambda-powertools/metrics").then(
    ({ Metrics }) => new Metrics({ namespace: METRICS_NAMESPACE, serviceName: "pybox" }),
  );
  return recorder;
}

/** Records a run's outcome and its time in the kernel. */
export function recordRun(result: Pick<RunResult, "status" | "durationMs">): void {
  const name = { ok: METRIC.runsOk, error: METRIC.runsError, timeout: METRIC.runsTimeout }[result.status];
  count(name);
  duration(METRIC.runDuration, result.durationMs);
}

/** Records a count (a kernel started, revived, reaped, …). */
export function count(name: (typeof METRIC)[keyof typeof METRIC], value = 1): void {
  pending.push({ name, unit: "Count", value });
}

/** Records a time in milliseconds. */
export function duration(name: (typeof METRIC)[keyof typeof METRIC], ms: number): void {
  pending.push({ name, unit: "Milliseconds", value: Math.max(0, Math.round(ms)) });
}

/**
 * middy middleware that writes the invocation's metrics at its end, when it recorded any (no
 * "nothing to publish" warning for calls that recorded none). With `enabled` false (`npm start`,
 * tests: `PYBOX_METRICS`) they are dropped instead, so a console is not flooded with EMF lines.
 */
export function publishMetrics(enabled: boolean): MiddlewareObj {
  const flush = () => flushMetrics(enabled);
  return { after: flush, onError: flush };
}

/** Writes (or, disabled, drops) what the invocation recorded; nothing when it recorded nothing. */
export async function flushMetrics(enabled: boolean): Promise<void> {
  if (pending.length === 0) return;
  const recorded = pending.splice(0);
  if (!enabled) return;
  const metrics = await loadRecorder();
  for (const { name, unit, value } of recorded) metrics.addMetric(name, unit as MetricUnitValue, value);
  metrics.publishStoredMetrics();
}

type MetricUnitValue = Parameters<import("@aws-lambda-powertools/metrics").Metrics["addMetric"]>[1];
