import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { PyboxClient, PyboxError } from "../../clients/typescript/src/index.ts";
import { CLIENT_ENV } from "../../lib/dev/python-env.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** Streams with the Python client, sync and async, and hangs up early once; prints what it saw. */
const PYTHON_STREAM = `
import asyncio, json, sys
from pybox_serverless import AsyncServerlessPyBoxManager, ServerlessPyBoxManager
url = sys.argv[1]
code = "import time\\nfor i in range(3):\\n    print(i, flush=True)\\n    time.sleep(0.3)\\n1+1"
endless = "import time\\nfor i in range(100):\\n    print(i, flush=True)\\n    time.sleep(0.3)"
out = {}
with ServerlessPyBoxManager(url, mirror=False) as manager:
    box = manager.start("py-sync")
    out["sync"] = [[e.event, e.data.get("text")] for e in box.stream(code)]
    out["syncResult"] = box.last_result.data
    for event in box.stream(endless):
        break
    out["afterHangUp"] = box.run("'free again'").data
async def main():
    manager = AsyncServerlessPyBoxManager(url, mirror=False)
    box = await manager.start("py-async")
    out["async"] = [[e.event, e.data.get("text")] async for e in box.stream(code)]
    await manager.aclose()
asyncio.run(main())
print(json.dumps(out))
`;

/** One Server-Sent Event as it arrived: its name, its data, and the read it came in. */
interface Arrived {
  event: string;
  data: unknown;
  read: number;
}

/**
 * POSTs a streamed run and reads the answer as it comes, noting which read of the body each event
 * arrived in (never wall times: this machine is shared). `stopAfter` hangs up after that many events.
 */
async function streamed(
  server: LocalApi,
  kernelId: string,
  code: string,
  options: { stopAfter?: number; caller?: string } = {},
): Promise<{ status: number; contentType: string | null; events: Arrived[]; text: string }> {
  const hangUp = new AbortController();
  const res = await fetch(`${server.api.baseUrl}/kernels/${kernelId}/run`, {
    method: "POST",
    headers: {
      accept: "text/event-stream",
      "content-type": "application/json",
      ...(options.caller ? { authorization: `Bearer ${options.caller}` } : {}),
    },
    body: JSON.stringify({ code }),
    signal: hangUp.signal,
  });
  const events: Arrived[] = [];
  let text = "";
  let pending = "";
  let read = 0;
  const reader = res.body?.getReader();
  try {
    for (;;) {
      const chunk = await reader?.read();
      if (!chunk || chunk.done) break;
      read++;
      const piece = Buffer.from(chunk.value).toString("utf8");
      text += piece;
      pending += piece;
      let end = pending.indexOf("\n\n");
      while (end >= 0) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const name = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
        const data = /^data: (.*)$/m.exec(block)?.[1];
        events.push({ event: name, data: data === undefined ? undefined : JSON.parse(data), read });
        end = pending.indexOf("\n\n");
      }
      if (options.stopAfter !== undefined && events.length >= options.stopAfter) {
        hangUp.abort();
        break;
      }
    }
  } catch (error) {
    if (!hangUp.signal.aborted) throw error;
  }
  return { status: res.status, contentType: res.headers.get("content-type"), events, text };
}

describe("streamed runs: Server-Sent Events through npm start", { timeout: 300_000 }, () => {
  let server: LocalApi;

  before(async () => {
    server = await startLocalApi();
    assert.equal((await server.api.start({ kernelId: "s" })).status, 201);
  });

  after(async () => {
    await server?.stop();
  });

  it("sends each print as it happens, then done with the whole RunResult", async () => {
    const answer = await streamed(
      server,
      "s",
      "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(1)\n'finished'",
    );

    assert.equal(answer.status, 200, answer.text);
    assert.match(answer.contentType ?? "", /^text\/event-stream/);
    const names = answer.events.map((e) => e.event);
    assert.deepEqual(names, ["stream", "stream", "stream", "result", "done"]);
    const [first] = answer.events;
    assert.deepEqual(first?.data, { name: "stdout", text: "0\n" });
    const done = answer.events.at(-1);
    assert.ok(first && done && first.read < done.read, "the first print arrived with the end of the run");
    const result = done?.data as {
      status: string;
      data: Array<Record<string, string>>;
      executionCount: number;
    };
    assert.equal(result.status, "ok");
    assert.deepEqual(result.data, [{ "text/plain": "0\n1\n2\n" }, { "text/plain": "'finished'" }]);
  });

  it("streams the error of code that raises, in the RunResult's shape", async () => {
    const answer = await streamed(server, "s", "print('before')\n1/0");

    assert.deepEqual(
      answer.events.map((e) => e.event),
      ["stream", "error", "done"],
    );
    const error = answer.events[1]?.data as { ename: string; evalue: string };
    assert.equal(error.ename, "ZeroDivisionError");
    assert.equal((answer.events[2]?.data as { status: string } | undefined)?.status, "error");
  });

  it("answers refusals before the run as a plain error: another caller's kernel is none", async () => {
    const answer = await streamed(server, "s", "1", { caller: "mallory" });

    assert.equal(answer.status, 404);
    assert.match(answer.contentType ?? "", /json/);
    assert.deepEqual(JSON.parse(answer.text), { error: { code: "NOT_FOUND", message: "no kernel 's'" } });
  });

  it("streams to the Python client's box.stream, sync and async, and an early break frees the kernel", async () => {
    const { stdout } = await promisify(execFile)(
      join(CLIENT_ENV.dir, "bin", "python"),
      ["-c", PYTHON_STREAM, server.api.baseUrl],
      { timeout: 120_000 },
    );

    const seen = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
    const expected = [
      ["stream", "0\n"],
      ["stream", "1\n"],
      ["stream", "2\n"],
      ["result", null],
      ["done", null],
    ];
    assert.deepEqual(seen.sync, expected);
    assert.deepEqual(seen.async, expected);
    assert.deepEqual(seen.syncResult, [{ "text/plain": "0\n1\n2\n" }, { "text/plain": "2" }]);
    assert.deepEqual(seen.afterHangUp, [{ "text/plain": "'free again'" }]);
  });

  it("streams to the TypeScript client as an async iterator; breaking out hangs up and frees the kernel", async () => {
    const client = new PyboxClient({ baseUrl: server.api.baseUrl });
    const seen: string[] = [];
    for await (const event of client.stream(
      "s",
      "import time\nfor i in range(2):\n    print(i, flush=True)\n    time.sleep(0.3)",
    )) {
      seen.push(event.event === "stream" ? `stream ${event.text.trim()}` : event.event);
      if (event.event === "done") assert.equal(event.result.status, "ok");
    }
    assert.deepEqual(seen, ["stream 0", "stream 1", "done"]);

    for await (const event of client.stream(
      "s",
      "import time\nfor j in range(100):\n    print(j, flush=True)\n    time.sleep(0.3)",
    )) {
      assert.equal(event.event, "stream");
      break;
    }
    assert.equal((await client.run("s", "'free again'")).data[0]?.["text/plain"], "'free again'");
    assert.ok(Number(await server.api.eval("s", "j")) < 99);

    const refused = await (async () => {
      for await (const _ of new PyboxClient({ baseUrl: server.api.baseUrl, token: "mallory" }).stream(
        "s",
        "1",
      )) {
        // never reached: the kernel is another caller's
      }
    })().catch((error: unknown) => error);
    assert.ok(refused instanceof PyboxError);
    assert.equal(refused.status, 404);
  });

  it("interrupts the run of a client that hangs up, so the kernel's next run goes ahead", async () => {
    const answer = await streamed(
      server,
      "s",
      "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.5)",
      { stopAfter: 1 },
    );
    assert.equal(answer.events[0]?.event, "stream");

    const next = await server.api.run("s", "'free again'");

    assert.equal(next.status, 200, next.text);
    assert.equal(next.body.data[0]?.["text/plain"], "'free again'");
    // The loop was cut short (it prints 60 numbers over 30 s), not waited out.
    assert.ok(Number(await server.api.eval("s", "i")) < 59);
  });
});
