import type { Context, LambdaFunctionURLEvent, StreamifyHandler } from "aws-lambda";
import { MethodNotAllowedError } from "../errors.ts";
import { logger } from "../logger.ts";
import { flushMetrics } from "../metrics.ts";
import type { Runtime } from "../runtime.ts";
import { errorResponse } from "./error-handler.ts";
import { type EventSink, streamRun } from "./run-stream.ts";

/**
 * The streaming function behind a Function URL (IAM auth: the caller is the signer's ARN, as behind
 * the HTTP API's IAM authorizer): a streamed run, written to Lambda's response stream as it goes.
 */
export function streamFunction(
  runtime: Pick<Runtime, "sandbox" | "config">,
): StreamifyHandler<LambdaFunctionURLEvent> {
  return async (event, responseStream, context: Context) => {
    logger.addContext(context);
    const hangUp = new AbortController();
    let stream: awslambda.HttpResponseStream | undefined;
    responseStream.once("error", () => hangUp.abort());
    responseStream.once("close", () => {
      if (!responseStream.writableFinished) hangUp.abort();
    });
    const sink: EventSink = {
      head: (statusCode, headers) => {
        stream = awslambda.HttpResponseStream.from(responseStream, { statusCode, headers });
      },
      write: (chunk) => {
        stream?.write(chunk);
      },
      end: () => {
        (stream ?? responseStream).end();
      },
      gone: hangUp.signal,
    };
    try {
      if (event.requestContext.http.method !== "POST") {
        const answer = errorResponse(new MethodNotAllowedError("only POST streams a run", ["POST"]));
        sink.head(answer.statusCode ?? 405, (answer.headers ?? {}) as Record<string, string>);
        sink.write(String(answer.body ?? ""));
        sink.end();
        return;
      }
      await streamRun(
        runtime.sandbox,
        runtime.config,
        event,
        sink,
        Date.now() + context.getRemainingTimeInMillis(),
      );
    } finally {
      await flushMetrics(runtime.config.metrics);
    }
  };
}

/**
 * Lambda's `awslambda.streamifyResponse`, where the runtime provides it; elsewhere (a bundle's
 * init measured in plain Node) the handler as it is.
 */
export function streamified<E>(handler: StreamifyHandler<E>): unknown {
  // Powertools' invoke store makes a `globalThis.awslambda` of its own outside Lambda too.
  const runtime = (globalThis as { awslambda?: Partial<typeof awslambda> }).awslambda;
  return typeof runtime?.streamifyResponse === "function" ? runtime.streamifyResponse(handler) : handler;
}
