import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { PyboxClient, PyboxNotFoundError } from "../../clients/typescript/src/index.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { rejection } from "../support/pybox-error.ts";

/**
 * The TypeScript client against the real service as `npm start` serves it (real kernels), driven
 * only through `PyboxClient`, checking what a user of the client would. The synchronous limit is
 * lowered to 3 s on both sides so the switch to queued runs is exercised in seconds, not 20.
 */

const SYNC_LIMIT_MS = 3_000;
const KERNEL = "ts-client";

/** The `text/plain` of a run's last output. */
function lastText(result: { data: Array<Record<string, unknown>> }): string {
  return String(result.data.at(-1)?.["text/plain"] ?? "");
}

describe("the TypeScript client against npm start", { timeout: 300_000 }, () => {
  let server: LocalApi;
  let pybox: PyboxClient;
  let stranger: PyboxClient;

  before(async () => {
    server = await startLocalApi({
      PYBOX_MAX_RUN_TIMEOUT_MS: String(SYNC_LIMIT_MS),
      PYBOX_RUN_TIMEOUT_MS: String(SYNC_LIMIT_MS),
      PYBOX_INTERRUPT_GRACE_MS: "2000",
    });
    pybox = new PyboxClient({
      baseUrl: server.api.baseUrl,
      token: "ts-alice",
      syncRunLimitMs: SYNC_LIMIT_MS,
    });
    stranger = new PyboxClient({ baseUrl: server.api.baseUrl, token: "ts-mallory" });
  });

  after(async () => {
    await server?.stop();
  });

  describe("kernels", () => {
    it("starts a kernel (created), then finds the same one on a second start", async () => {
      const made = await pybox.start({ kernelId: KERNEL });
      assert.equal(made.created, true);
      assert.equal(made.kernelId, KERNEL);
      assert.equal(made.backend, "local");
      assert.equal(made.state, "idle");

      const found = await pybox.start({ kernelId: KERNEL, env: { IGNORED: "1" } });
      assert.equal(found.created, false);
      assert.equal(found.createdAt, made.createdAt);
    });

    it("names a kernel itself when no id is given", async () => {
      const kernel = await pybox.start();
      assert.equal(kernel.created, true);
      assert.match(kernel.kernelId, /^[0-9a-f-]{36}$/);
      await pybox.stop(kernel.kernelId);
    });

    it("reports the kernel record", async () => {
      const kernel = await pybox.get(KERNEL);
      assert.equal(kernel.kernelId, KERNEL);
      assert.ok(["idle", "busy"].includes(kernel.state));
    });
  });

  describe("runs", () => {
    it("returns print output as text/plain", async () => {
      const result = await pybox.run(KERNEL, "print('hello from ts')");
      assert.equal(result.status, "ok");
      assert.deepEqual(result.data, [{ "text/plain": "hello from ts\n" }]);
      assert.equal(result.error, null);
    });

    it("keeps variables between runs", async () => {
      await pybox.run(KERNEL, "x = 41");
      assert.equal(lastText(await pybox.run(KERNEL, "x + 1")), "42");
    });

    it("gives an error result (not a thrown error) for code that raises", async () => {
      const result = await pybox.run(KERNEL, "1 / 0");
      assert.equal(result.status, "error");
      assert.equal(result.error?.ename, "ZeroDivisionError");
      assert.ok((result.error?.traceback.length ?? 0) > 0);
    });

    it("interrupts code past its timeout, and the kernel stays usable with its variables", async () => {
      const result = await pybox.run(KERNEL, "import time\ntime.sleep(30)", { timeoutMs: 1_000 });
      assert.equal(result.status, "timeout");
      assert.equal(lastText(await pybox.run(KERNEL, "x")), "41");
    });

    it("shows a pandas DataFrame as text/html beside text/plain", async () => {
      const result = await pybox.run(
        KERNEL,
        "import pandas as pd\npd.DataFrame({'x': [1, 2], 'y': ['a', 'b']})",
      );
      assert.equal(result.status, "ok");
      const bundle = result.data[0] ?? {};
      assert.match(String(bundle["text/html"]), /<table[\s\S]*<th>x<\/th>/);
      assert.match(String(bundle["text/plain"]), /x\s+y/);
    });

    it("queues a run and waits for its result", async () => {
      const queued = await pybox.runAsync(KERNEL, "import time\ntime.sleep(0.3)\nprint(6 * 7)");
      assert.equal(queued.status, "queued");
      assert.equal(queued.kernelId, KERNEL);

      const result = await pybox.waitForRun(KERNEL, queued.runId, { pollMs: 200 });
      assert.equal(result.status, "ok");
      assert.deepEqual(result.data, [{ "text/plain": "42\n" }]);
      assert.equal((await pybox.getRun(KERNEL, queued.runId)).status, "ok");
    });

    it("runs code longer than the synchronous limit through the queue without the caller noticing", async () => {
      const started = Date.now();
      const result = await pybox.run(KERNEL, "import time\ntime.sleep(4)\nprint('slept', x)", {
        timeoutMs: SYNC_LIMIT_MS + 5_000,
      });
      assert.equal(result.status, "ok", JSON.stringify(result));
      assert.deepEqual(result.data, [{ "text/plain": "slept 41\n" }]);
      assert.ok(Date.now() - started >= 4_000);
    });
  });

  describe("files", () => {
    const blob = randomBytes(9_000_000);

    it("uploads 9 MB of random bytes in chunks and reads them back byte-exact", async () => {
      const info = await pybox.upload(KERNEL, "data/blob.bin", blob);
      assert.equal(info.path, "data/blob.bin");
      assert.equal(info.size, blob.length);
      assert.equal(info.sha256, createHash("sha256").update(blob).digest("hex"));

      const back = await pybox.download(KERNEL, "data/blob.bin");
      assert.equal(back.byteLength, blob.length);
      assert.ok(Buffer.from(back).equals(blob), "the downloaded bytes are the uploaded ones");
    });

    it("puts the file where the kernel's code finds it", async () => {
      const result = await pybox.run(KERNEL, "import os\nos.path.getsize('data/blob.bin')");
      assert.equal(lastText(result), String(blob.length));
    });

    it("takes text and names with spaces, and a file the kernel wrote comes back", async () => {
      await pybox.upload(KERNEL, "data/my table.csv", "a,b\n1,2\n");
      const result = await pybox.run(
        KERNEL,
        "import pandas as pd\ndf = pd.read_csv('data/my table.csv')\ndf['c'] = df.a + df.b\ndf.to_csv('data/out.csv', index=False)\nint(df.c[0])",
      );
      assert.equal(lastText(result), "3");
      assert.ok(result.artifacts.some((artifact) => artifact.path === "data/out.csv"));
      assert.equal(new TextDecoder().decode(await pybox.download(KERNEL, "data/out.csv")), "a,b,c\n1,2,3\n");
    });

    it("lists a folder, and everything below the working directory when recursive", async () => {
      const listing = await pybox.list(KERNEL, { path: "data" });
      assert.deepEqual(
        listing.files.map((file) => [file.path, file.kind]),
        [
          ["data/blob.bin", "file"],
          ["data/my table.csv", "file"],
          ["data/out.csv", "file"],
        ],
      );
      assert.equal(listing.files[0]?.size, blob.length);
      assert.equal(listing.truncated, false);

      const everything = await pybox.list(KERNEL, { recursive: true });
      assert.ok(everything.files.some((file) => file.path === "data" && file.kind === "dir"));
      assert.ok(everything.files.some((file) => file.path === "data/blob.bin"));
    });

    it("removes a file, after which reading it is a 404", async () => {
      await pybox.remove(KERNEL, "data/blob.bin");

      const error = await rejection(pybox.download(KERNEL, "data/blob.bin"));
      assert.ok(error instanceof PyboxNotFoundError);
      assert.equal(error.status, 404);
      assert.equal(error.code, "NOT_FOUND");
      assert.ok(
        !(await pybox.list(KERNEL, { path: "data" })).files.some((file) => file.path === "data/blob.bin"),
      );
    });
  });

  describe("another caller", () => {
    it("sees the first caller's kernel as one that does not exist", async () => {
      for (const attempt of [
        () => stranger.get(KERNEL),
        () => stranger.run(KERNEL, "x"),
        () => stranger.download(KERNEL, "data/out.csv"),
        () => stranger.list(KERNEL),
      ]) {
        const error = await rejection(attempt());
        assert.equal(error.status, 404);
        assert.equal(error.code, "NOT_FOUND");
      }
    });

    it("cannot stop it: its stop is a no-op and the kernel keeps its state", async () => {
      await stranger.stop(KERNEL);
      assert.equal(lastText(await pybox.run(KERNEL, "x")), "41");
    });
  });

  describe("stop", () => {
    it("stops the kernel, which is then unknown, and stopping again is fine", async () => {
      await pybox.stop(KERNEL);

      const error = await rejection(pybox.get(KERNEL));
      assert.equal(error.code, "NOT_FOUND");
      await pybox.stop(KERNEL);
      await pybox.stop("never-was");
    });
  });
});
