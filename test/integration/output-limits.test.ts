import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { responseBytes } from "../../lib/jupyter/output-limits.ts";
import { RESULT_OVERHEAD_BYTES } from "../../lib/jupyter/run-collector.ts";
import type { ApiResponse, RunResultBody } from "../support/api.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** Lambda's cap on a synchronous invocation's response. */
const LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024;

/** What the Lambda response adds around the RunResult: status code and headers. */
const ENVELOPE_BYTES = 512;

/**
 * The size of the Lambda response that would carry this HTTP answer: the body, which is the
 * RunResult's JSON, travels as a JSON string inside the invocation response, escaped a second time.
 */
function lambdaResponseBytes(res: ApiResponse<RunResultBody>): number {
  const headers = Object.fromEntries(res.headers.entries());
  return Buffer.byteLength(JSON.stringify({ statusCode: res.status, headers, body: res.text }));
}

/** A run's output with its heavy payloads abbreviated, for assertion messages. */
function summary(res: ApiResponse<RunResultBody>): string {
  return res.text.length < 2_000 ? res.text : `${res.text.slice(0, 1_000)} … (${res.text.length} characters)`;
}

describe("output limits through the HTTP API, on a real kernel", { timeout: 300_000 }, () => {
  describe("with small caps", () => {
    const total = 64 * 1024;
    const entry = 16 * 1024;
    let server: LocalApi;

    before(async () => {
      server = await startLocalApi({
        PYBOX_MAX_OUTPUT_BYTES: String(total),
        PYBOX_MAX_OUTPUT_ENTRY_BYTES: String(entry),
      });
      assert.equal((await server.api.start({ kernelId: "out" })).status, 201);
      assert.equal((await server.api.run("out", "x = 41")).body.status, "ok");
    });

    after(async () => {
      await server?.stop();
    });

    /** Runs code whose output must be cut, and checks the answer is bounded and says so. */
    async function runCut(code: string): Promise<RunResultBody> {
      const res = await server.api.run("out", code, 20_000);
      assert.equal(res.status, 200, summary(res));
      assert.equal(res.body.truncated, true, summary(res));
      const bytes = lambdaResponseBytes(res);
      assert.ok(bytes <= total + RESULT_OVERHEAD_BYTES + ENVELOPE_BYTES, `${bytes} bytes`);
      for (const item of res.body.data)
        assert.ok(responseBytes(item) <= entry, "an entry is over the entry cap");
      return res.body;
    }

    /** The kernel kept its variables and still runs code. */
    async function assertKernelUnharmed(): Promise<void> {
      assert.equal(await server.api.eval("out", "x + 1"), "42");
    }

    it("cuts 5 MB of printed text at the entry cap, cleanly, and the kernel goes on", async () => {
      const result = await runCut('print("a" * 5_000_000)');

      assert.equal(result.status, "ok");
      assert.equal(result.data.length, 1);
      const text = String(result.data[0]?.["text/plain"]);
      assert.match(text, /^a+$/);
      assert.ok(text.length > entry - 100, `only ${text.length} characters kept`);
      await assertKernelUnharmed();
    });

    it("keeps later entries after one is cut at the entry cap, up to the total", async () => {
      const result = await runCut(
        'import sys\nfor c in "abcdefgh":\n    print(c * 100_000)\n    sys.stdout.flush()\n    print("-", file=sys.stderr)\n    sys.stderr.flush()',
      );

      const texts = result.data.map((item) => String(item["text/plain"]));
      assert.ok(texts.length >= 4, `only ${texts.length} entries`);
      assert.match(texts[0] ?? "", /^a+$/);
      assert.ok(
        texts.some((text) => /^b+$/.test(text)),
        "the entry after a cut one was dropped",
      );
      await assertKernelUnharmed();
    });

    it("counts control characters, quotes and backslashes as the response escapes them", async () => {
      for (const char of ["\\x01", '\\"', "\\\\"]) {
        const result = await runCut(`print("${char}" * 3_000_000)`);

        const text = String(result.data[0]?.["text/plain"]);
        assert.equal(new Set(text).size, 1, `${char}: the kept text is not made of that character alone`);
        await assertKernelUnharmed();
      }
    });

    it("drops a plot's image over the entry cap whole, keeps its text/plain, keeps a small one", async () => {
      const noise = await runCut(
        "import numpy as np, matplotlib.pyplot as plt\nplt.imshow(np.random.default_rng(0).random((300, 300)))\nplt.show()",
      );
      assert.ok(!noise.data.some((item) => "image/png" in item), "an image over the entry cap was kept");
      assert.ok(
        noise.data.some((item) => /^<Figure size/.test(String(item["text/plain"]))),
        mimeTypes(noise),
      );
      await assertKernelUnharmed();

      const small = await server.api.run("out", "plt.figure(figsize=(1, 1))\nplt.plot([1, 2])\nplt.show()");
      assert.equal(small.body.truncated, false, summary(small));
      assert.ok(
        small.body.data.some((item) => typeof item["image/png"] === "string"),
        summary(small),
      );
    });

    it("keeps an exception whose message is huge, cut to the entry cap", async () => {
      const result = await runCut('raise ValueError("v" * 1_000_000)');

      assert.equal(result.status, "error");
      assert.equal(result.error?.ename, "ValueError");
      assert.match(result.error?.evalue ?? "", /^v+$/);
      assert.ok(responseBytes(result.error) <= entry);
      await assertKernelUnharmed();
    });
  });

  /** 20 MB over 10 entries, every character one the response escapes: a quote, a backslash, \x01. */
  const TWENTY_MB = [
    "y = 7",
    "import sys",
    "for i in range(10):",
    "    out = (sys.stdout, sys.stderr)[i % 2]",
    '    out.write("a\\"\\\\\\x01" * 500_000)',
    "    out.flush()",
  ].join("\n");

  const largest = String(5 * 1024 * 1024);
  for (const [caps, env] of [
    ["the default caps", {}],
    ["the largest caps allowed", { PYBOX_MAX_OUTPUT_BYTES: largest, PYBOX_MAX_OUTPUT_ENTRY_BYTES: largest }],
  ] as const) {
    describe(`with ${caps}`, () => {
      let server: LocalApi;

      before(async () => {
        server = await startLocalApi(env);
        assert.equal((await server.api.start({ kernelId: "big" })).status, 201);
      });

      after(async () => {
        await server?.stop();
      });

      it("answers 20 MB of quotes, backslashes and control characters in under 6 MB of Lambda response", async () => {
        const res = await server.api.run("big", TWENTY_MB, 20_000);

        assert.equal(res.status, 200, summary(res));
        assert.equal(res.body.truncated, true);
        assert.ok(lambdaResponseBytes(res) < LAMBDA_RESPONSE_LIMIT, `${lambdaResponseBytes(res)} bytes`);
        assert.ok(lambdaResponseBytes(res) > 4_000_000, "the output was cut far below its cap");
        assert.ok(String(res.body.data[0]?.["text/plain"]).startsWith('a"\\\u0001a"\\\u0001'));
        assert.equal(await server.api.eval("big", "y * 6"), "42");
      });
    });
  }
});

/** The MIME types of each entry of a result, for assertion messages. */
function mimeTypes(result: RunResultBody): string {
  return JSON.stringify(result.data.map((item) => Object.keys(item)));
}
