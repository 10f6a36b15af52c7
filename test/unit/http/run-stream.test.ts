import assert from "node:assert/strict";
import { PassThrough, type Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import type { Context, LambdaFunctionURLEvent } from "aws-lambda";
import { loadConfig } from "../../../lib/config.ts";
import type { OutputEvent } from "../../../lib/core/run-events.ts";
import type { RunResult } from "../../../lib/core/run-result.ts";
import { NotFoundError } from "../../../lib/errors.ts";
import { sseOf, wantsEventStream } from "../../../lib/http/run-stream.ts";
import { streamFunction } from "../../../lib/http/stream-function.ts";
import { outputObserver } from "../../../lib/jupyter/execution.ts";
import { createMessage } from "../../../lib/jupyter/messages.ts";
import type { RunLimits } from "../../../lib/sandbox/runs.ts";

const RESULT: RunResult = {
  status: "ok",
  data: [{ "text/plain": "0\n" }],
  error: null,
  executionCount: 1,
  durationMs: 5,
  truncated: false,
  artifacts: [],
};

/** What Lambda's runtime gives a streaming handler, doubled: `from` records the response's head. */
const heads: Array<Record<string, unknown>> = [];
before(() => {
  (globalThis as Record<string, unknown>).awslambda = {
    HttpResponseStream: {
      from: (stream: Writable, metadata: Record<string, unknown>) => {
        heads.push(metadata);
        return stream;
      },
    },
  };
});
after(() => {
  delete (globalThis as Record<string, unknown>).awslambda;
});

function urlEvent(path: string, caller?: string): LambdaFunctionURLEvent {
  return {
    rawPath: path,
    body: JSON.stringify({ code: "print(0)" }),
    isBase64Encoded: false,
    headers: { accept: "text/event-stream" },
    requestContext: {
      http: { method: "POST" },
      ...(caller ? { authorizer: { iam: { userArn: caller } } } : {}),
    },
  } as unknown as LambdaFunctionURLEvent;
}

const CONTEXT = { getRemainingTimeInMillis: () => 29_000 } as unknown as Context;

async function invoke(
  event: LambdaFunctionURLEvent,
  run: (limits: RunLimits, body: PassThrough) => Promise<RunResult>,
  interrupts: string[] = [],
) {
  heads.length = 0;
  const body = new PassThrough();
  let text = "";
  body.on("data", (chunk: Buffer) => {
    text += chunk.toString();
  });
  const sandbox = {
    run: (_owner: string, _kernelId: string, _code: string, limits: RunLimits = {}) => run(limits, body),
    interrupt: async (_owner: string, kernelId: string) => {
      interrupts.push(kernelId);
    },
  };
  const handler = streamFunction({ sandbox: sandbox as never, config: loadConfig({}) });
  await handler(event, body as never, CONTEXT);
  return { head: heads[0], text };
}

describe("streamed runs", () => {
  it("writes each output, then done, as Server-Sent Events through Lambda's response stream", async () => {
    const { head, text } = await invoke(
      urlEvent("/kernels/k/run", "arn:aws:iam::1:user/alice"),
      async (limits) => {
        limits.onOutput?.({ event: "stream", name: "stdout", text: "0\n" });
        return RESULT;
      },
    );

    assert.equal(head?.statusCode, 200);
    assert.match(
      String((head?.headers as Record<string, string> | undefined)?.["content-type"]),
      /^text\/event-stream/,
    );
    assert.equal(
      text,
      `event: stream\ndata: {"name":"stdout","text":"0\\n"}\n\nevent: done\ndata: ${JSON.stringify(RESULT)}\n\n`,
    );
  });

  it("answers a refusal before any output as the plain error, with its status", async () => {
    const { head, text } = await invoke(urlEvent("/kernels/k/run", "arn:aws:iam::1:user/alice"), async () => {
      throw new NotFoundError("no kernel 'k'");
    });

    assert.equal(head?.statusCode, 404);
    assert.deepEqual(JSON.parse(text), { error: { code: "NOT_FOUND", message: "no kernel 'k'" } });
  });

  it("refuses a request with no IAM caller (401) and a path that is not a run (404), running nothing", async () => {
    let ran = 0;
    const run = async () => {
      ran++;
      return RESULT;
    };
    assert.equal((await invoke(urlEvent("/kernels/k/run"), run)).head?.statusCode, 401);
    assert.equal(
      (await invoke(urlEvent("/kernels/k/runs", "arn:aws:iam::1:user/a"), run)).head?.statusCode,
      404,
    );
    assert.equal(
      (await invoke(urlEvent("/kernels/..%2F/run", "arn:aws:iam::1:user/a"), run)).head?.statusCode,
      400,
    );
    assert.equal(
      (await invoke(urlEvent("/kernels/%E0%A4%A/run", "arn:aws:iam::1:user/a"), run)).head?.statusCode,
      400,
    );
    assert.equal(ran, 0);
  });

  it("ends a stream that failed after output began with a failed event, never a trace", async () => {
    const { text } = await invoke(urlEvent("/kernels/k/run", "arn:aws:iam::1:user/alice"), async (limits) => {
      limits.onOutput?.({ event: "stream", name: "stdout", text: "0\n" });
      throw new Error("socket lost at 10.0.0.7");
    });

    assert.match(
      text,
      /event: failed\ndata: \{"error":\{"code":"INTERNAL","message":"internal error"\}\}\n\n$/,
    );
    assert.doesNotMatch(text, /10\.0\.0\.7/);
  });

  it("interrupts a hung-up run only once its own output came: before, the kernel may run another's cell", async () => {
    const caller = "arn:aws:iam::1:user/alice";
    // The client goes, and the run goes on a little longer (the close is seen meanwhile).
    const hangUp = async (body: PassThrough) => {
      body.destroy();
      await new Promise((resolve) => setImmediate(resolve));
    };
    const early: string[] = [];
    await invoke(
      urlEvent("/kernels/waiting/run", caller),
      async (_limits, body) => {
        await hangUp(body);
        return RESULT;
      },
      early,
    );
    const late: string[] = [];
    await invoke(
      urlEvent("/kernels/running/run", caller),
      async (limits, body) => {
        limits.onOutput?.({ event: "stream", name: "stdout", text: "0\n" });
        await hangUp(body);
        return RESULT;
      },
      late,
    );

    assert.deepEqual(early, []);
    assert.deepEqual(late, ["running"]);
  });

  it("knows a request for events by its Accept header, whatever its case and parameters", () => {
    assert.equal(wantsEventStream({ Accept: "application/json, text/event-stream;q=0.9" }), true);
    assert.equal(wantsEventStream({ accept: "application/json" }), false);
    assert.equal(wantsEventStream(undefined), false);
    assert.equal(
      sseOf({ event: "error", error: { ename: "E", evalue: "v", traceback: [] } }),
      'event: error\ndata: {"ename":"E","evalue":"v","traceback":[]}\n\n',
    );
  });

  it("tells outputs within the run's caps: a stream cut at the total, a bundle too large kept as its text", () => {
    const told: OutputEvent[] = [];
    const observe = outputObserver((event) => told.push(event), {
      maxOutputBytes: 40,
      maxOutputEntryBytes: 30,
    });
    const message = (type: string, content: Record<string, unknown>) => createMessage(type, content, "s");

    observe(message("display_data", { data: { "image/png": "x".repeat(100), "text/plain": "<Figure>" } }));
    observe(message("stream", { name: "stdout", text: "a".repeat(50) }));
    observe(message("stream", { name: "stdout", text: "more" }));
    observe(message("error", { ename: "ValueError", evalue: "bad", traceback: ["\u001b[31mline\u001b[0m"] }));

    assert.deepEqual(told, [
      { event: "display", data: { "text/plain": "<Figure>" } },
      // The total's room after the bundle's bytes.
      {
        event: "stream",
        name: "stdout",
        text: "a".repeat(40 - JSON.stringify({ "text/plain": "<Figure>" }).length),
      },
      { event: "error", error: { ename: "ValueError", evalue: "bad", traceback: ["line"] } },
    ]);
  });
});
