import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Context } from "aws-lambda";
import { logger } from "../logger.ts";
import { count, METRIC, publishMetrics } from "../metrics.ts";
import type { Runtime } from "../runtime.ts";
import type { ReapReport } from "./service.ts";

/** The Lambda signature of the scheduled reaper. */
export type ReaperLambda = (event: unknown, context: Context) => Promise<ReapReport>;

/**
 * The scheduled reaper of a container's runtime: one pass of `SandboxService.reap` with the
 * configured idle time, every log line carrying the invocation's request id, and what it cleaned up
 * recorded as metrics.
 */
export function reaperHandler(runtime: Pick<Runtime, "sandbox" | "config">): ReaperLambda {
  const idleMs = runtime.config.idleTimeoutSeconds * 1_000;
  const fn = middy<unknown, ReapReport>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(publishMetrics(runtime.config.metrics))
    .handler(async () => {
      const report = await runtime.sandbox.reap(idleMs);
      count(METRIC.kernelsReaped, report.idle);
      count(METRIC.kernelsFoundDead, report.dead);
      count(METRIC.orphansStopped, report.orphans);
      return report;
    });
  return (event, context) => fn(event, context);
}
