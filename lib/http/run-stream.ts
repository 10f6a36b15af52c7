import type { APIGatewayProxyEventV2 } from "aws-lambda";
import type { Config } from "../config.ts";
import type { RunEvent } from "../core/run-events.ts";
import { NotFoundError, ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import type { SandboxService } from "../sandbox/service.ts";
import { errorResponse } from "./error-handler.ts";
import { jsonBodyOf, validate } from "./handler.ts";
import { callerOf } from "./identity.ts";
import { codeBody } from "./routes.ts";
import { KernelPathSchema, RunBodySchema } from "./schemas.ts";

/** The part of a payload 2.0 event a streamed run reads (API Gateway, a Function URL, the dev server). */
export type StreamRequest = Pick<
  APIGatewayProxyEventV2,
  "rawPath" | "body" | "isBase64Encoded" | "headers"
> & {
  requestContext: unknown;
};

/**
 * Where a streamed run writes: a status and headers once, then chunks. A Lambda response stream
 * and a Node `ServerResponse` are both one. `gone` is aborted when the client hangs up.
 */
export interface EventSink {
  head(status: number, headers: Record<string, string>): void;
  write(chunk: string): void;
  end(): void;
  gone: AbortSignal;
}

/** The path a streamed run is asked on, as the route catalogue's `run`. */
const RUN_PATH = /^\/kernels\/([^/]+)\/run$/;

/** Whether the request asks for Server-Sent Events (`Accept: text/event-stream`). */
export function wantsEventStream(headers: Record<string, string | undefined> | undefined): boolean {
  const accept = Object.entries(headers ?? {}).find(([name]) => name.toLowerCase() === "accept")?.[1];
  return accept?.split(",").some((type) => type.trim().split(";")[0] === "text/event-stream") ?? false;
}

/** One event as Server-Sent Events write it: its name, then its data as one JSON line. */
export function sseOf(event: RunEvent): string {
  const data =
    event.event === "done" ? event.result : event.event === "error" ? event.error : withoutName(event);
  return `event: ${event.event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * `POST /kernels/{kernelId}/run` answered as Server-Sent Events: each output as the kernel
 * produces it, then `done` with the whole RunResult. The same checks, owner rules, timeouts and
 * caps as a plain run: anything refused before the run begins is the plain error answer (status
 * and JSON body); a failure after output began is a `failed` event. A client that hangs up after
 * the run showed output has it interrupted, so the kernel is free for the next.
 */
export async function streamRun(
  sandbox: Pick<SandboxService, "run" | "interrupt">,
  config: Pick<Config, "run">,
  request: StreamRequest,
  sink: EventSink,
  deadline: number,
): Promise<void> {
  let started = false;
  let finished = false;
  let running = false;
  const send = (event: RunEvent) => {
    // An output of this request proves its code is what the kernel runs (it holds the lease).
    if (event.event !== "done" && event.event !== "failed") running = true;
    if (sink.gone.aborted) return;
    if (!started) {
      started = true;
      sink.head(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
      });
    }
    sink.write(sseOf(event));
  };
  let owner: string | undefined;
  let kernelId: string | undefined;
  // Only a run whose own output has come is interrupted: before that, the kernel may be running
  // another request's cell (this one still waits for the lease), which must not be cut short.
  // An unseen run goes on to its end or its timeout, as a plain run would.
  const interrupt = () => {
    if (!running || finished || owner === undefined || kernelId === undefined) return;
    logger.info("streamed run's client hung up; interrupting the kernel", { kernelId });
    void sandbox.interrupt(owner, kernelId);
  };
  sink.gone.addEventListener("abort", interrupt, { once: true });
  try {
    owner = callerOf(request.requestContext);
    const match = RUN_PATH.exec(request.rawPath);
    if (!match?.[1]) throw new NotFoundError(`no route POST ${request.rawPath}`);
    kernelId = validate(KernelPathSchema, { kernelId: decodedSegment(match[1]) }, "path").kernelId;
    const body = jsonBodyOf(request, RunBodySchema, codeBody(config));
    const result = await sandbox.run(owner, kernelId, body.code, {
      ...(body.timeoutMs === undefined ? {} : { timeoutMs: body.timeoutMs }),
      deadline,
      onOutput: send,
    });
    finished = true;
    send({ event: "done", result });
  } catch (error) {
    finished = true;
    const answer = errorResponse(error);
    if (started) {
      const { error: failure } = JSON.parse(String(answer.body)) as {
        error: { code: string; message: string };
      };
      send({ event: "failed", error: { code: failure.code, message: failure.message } });
    } else if (!sink.gone.aborted) {
      sink.head(answer.statusCode ?? 500, (answer.headers ?? {}) as Record<string, string>);
      sink.write(String(answer.body ?? ""));
    }
  } finally {
    sink.gone.removeEventListener("abort", interrupt);
    sink.end();
  }
}

function withoutName<E extends { event: string }>(event: E): Omit<E, "event"> {
  const { event: _name, ...rest } = event;
  return rest;
}

/** A path segment percent-decoded; a malformed escape is the caller's mistake (400), not ours. */
function decodedSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ValidationError("the kernel id in the path is not valid percent-encoding");
  }
}
