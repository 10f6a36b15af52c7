import assert from "node:assert/strict";
import { describe, it } from "node:test";
import middy from "@middy/core";
import type { Context } from "aws-lambda";
import { loadConfig } from "../../lib/config.ts";
import { count, METRIC, METRICS_NAMESPACE, publishMetrics, recordRun } from "../../lib/metrics.ts";

/** Everything written to stdout while `use` runs (Powertools writes EMF lines there). */
async function stdoutOf(use: () => Promise<unknown>): Promise<string> {
  const write = process.stdout.write.bind(process.stdout);
  let out = "";
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    await use();
  } finally {
    process.stdout.write = write;
  }
  return out;
}

const CONTEXT = { functionName: "pybox-run", getRemainingTimeInMillis: () => 10_000 } as unknown as Context;

describe("metrics", () => {
  it("writes what an invocation recorded as one EMF line in the Pybox namespace", async () => {
    const fn = middy(async () => {
      recordRun({ status: "timeout", durationMs: 1_234 });
      count(METRIC.kernelStartsPooled);
      return "done";
    }).use(publishMetrics(true));

    const out = await stdoutOf(() => fn({}, CONTEXT));

    const emf = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown> & {
      _aws: { CloudWatchMetrics: Array<{ Namespace: string; Metrics: Array<{ Name: string }> }> };
    };
    const [directive] = emf._aws.CloudWatchMetrics;
    assert.equal(directive?.Namespace, METRICS_NAMESPACE);
    assert.deepEqual(directive?.Metrics.map((m) => m.Name).sort(), [
      "KernelStartsPooled",
      "RunDuration",
      "RunsTimeout",
    ]);
    assert.equal(emf.RunDuration, 1_234);
  });

  it("writes nothing for an invocation that recorded nothing, and drops what it recorded when disabled", async () => {
    const quiet = middy(async () => "nothing").use(publishMetrics(true));
    const disabled = middy(async () => recordRun({ status: "ok", durationMs: 1 })).use(publishMetrics(false));
    const after = middy(async () => "nothing").use(publishMetrics(true));

    const out = await stdoutOf(async () => {
      await quiet({}, CONTEXT);
      await disabled({}, CONTEXT);
      await after({}, CONTEXT);
    });

    assert.equal(out, "");
  });

  it("is on in Lambda and off under npm start, unless PYBOX_METRICS says otherwise", () => {
    assert.equal(loadConfig({ AWS_LAMBDA_FUNCTION_NAME: "pybox-run" }).metrics, true);
    assert.equal(loadConfig({}).metrics, false);
    assert.equal(
      loadConfig({ AWS_LAMBDA_FUNCTION_NAME: "pybox-run", PYBOX_METRICS: "false" }).metrics,
      false,
    );
    assert.equal(loadConfig({ PYBOX_METRICS: "true" }).metrics, true);
  });
});
