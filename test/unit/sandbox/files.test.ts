import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { HelperRequest } from "../../../lib/backends/port.ts";
import { FILE_CHUNK_BYTES } from "../../../lib/core/files.ts";
import {
  FolderNotEmptyError,
  KernelBusyError,
  KernelDeadError,
  KernelDiedError,
  PayloadTooLargeError,
  UploadConflictError,
  ValidationError,
} from "../../../lib/errors.ts";
import { KernelFiles } from "../../../lib/sandbox/files.ts";
import type { FakeKernel } from "../../support/fakes/backend.ts";
import { ago, sandbox, testSettings } from "./harness.ts";

/** The arguments a file helper request carries to the kernel (base64 JSON in its expression). */
function argsOf(request: HelperRequest<unknown>): Record<string, unknown> {
  const encoded = /\.call\("([A-Za-z0-9+/=]*)"/.exec(request.expression)?.[1];
  assert.ok(encoded, "a file helper request");
  return JSON.parse(Buffer.from(encoded, "base64").toString("utf8"));
}

/** The operations the kernel was asked for, in order. */
function opsOf(kernel: FakeKernel | undefined): unknown[] {
  return (kernel?.helpers ?? []).map((request) => argsOf(request).op);
}

const INFO = { path: "a.txt", size: 3, mtime: "2026-12-04T10:00:00.000Z", sha256: "0".repeat(64) };

/** A sandbox with the caller's kernel `k` started and a `KernelFiles` over it. */
async function started(settings: Parameters<typeof sandbox>[0] = {}) {
  const room = sandbox(settings);
  await room.lifecycle.start("alice", { kernelId: "k" });
  return {
    ...room,
    files: new KernelFiles(room.kernels),
    kernel: () => room.backend.runningOf("alice", "k"),
  };
}

describe("KernelFiles", { timeout: 10_000 }, () => {
  describe("put", () => {
    it("sends the bytes to the caller's kernel and says whether the file is new", async () => {
      // Prepare
      const { files, backend, kernel } = await started();
      backend.answerHelper = () => ({ ok: true, done: true, created: true, file: INFO });

      // Act
      const outcome = await files.put("alice", "k", "a.txt", Buffer.from("abc"), undefined);

      // Assess
      assert.deepEqual(outcome, { done: true, created: true, file: INFO });
      const request = kernel()?.helpers.at(-1);
      assert.ok(request);
      assert.deepEqual(argsOf(request), {
        op: "write",
        path: "a.txt",
        start: 0,
        total: 3,
        abandonAfter: 3_600,
      });
      assert.match(request.expression, new RegExp(`"${Buffer.from("abc").toString("base64")}"\\)$`));
      assert.ok(request.timeoutMs > 0 && request.timeoutMs <= 10_000);
    });

    it("answers a chunk that is not the last with the bytes received so far", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({ ok: true, done: false, received: 10 });

      // Act
      const outcome = await files.put("alice", "k", "big.bin", Buffer.alloc(10), {
        start: 0,
        end: 9,
        total: 30,
      });

      // Assess
      assert.deepEqual(outcome, { done: false, progress: { path: "big.bin", received: 10 } });
    });

    it("refuses a file over the configured size with 413 before anything reaches the kernel", async () => {
      // Prepare
      const { files, kernel } = await started({ settings: { files: { maxFileBytes: 100 } } });
      const before = opsOf(kernel());

      // Act
      const whole = files.put("alice", "k", "a.bin", Buffer.alloc(101), undefined);
      const chunked = files.put("alice", "k", "a.bin", Buffer.alloc(10), { start: 0, end: 9, total: 101 });

      // Assess
      await assert.rejects(whole, PayloadTooLargeError);
      await assert.rejects(chunked, PayloadTooLargeError);
      assert.deepEqual(opsOf(kernel()), before);
    });

    it("refuses a body over one request's 4 MiB with 413, and a chunk whose range does not fit it with 400", async () => {
      // Prepare
      const { files, kernel } = await started({ settings: { files: { maxFileBytes: 100 * 1024 * 1024 } } });
      const before = opsOf(kernel());

      // Act
      const tooBig = files.put("alice", "k", "a.bin", Buffer.alloc(FILE_CHUNK_BYTES + 1), undefined);
      const longer = files.put("alice", "k", "a.bin", Buffer.alloc(11), { start: 0, end: 9, total: 20 });
      const pastTotal = files.put("alice", "k", "a.bin", Buffer.alloc(10), { start: 15, end: 24, total: 20 });
      const badPath = files.put("alice", "k", "../escape.txt", Buffer.alloc(1), undefined);

      // Assess
      await assert.rejects(tooBig, PayloadTooLargeError);
      await assert.rejects(longer, ValidationError);
      await assert.rejects(pastTotal, ValidationError);
      await assert.rejects(badPath, ValidationError);
      assert.deepEqual(opsOf(kernel()), before);
    });

    it("says a chunk out of order is a conflict, with where the upload stands", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({
        ok: false,
        reason: "conflict",
        message: "the next chunk of 'big.bin' starts at byte 10, not 20",
        received: 10,
      });

      // Act
      const outcome = files.put("alice", "k", "big.bin", Buffer.alloc(10), { start: 20, end: 29, total: 30 });

      // Assess
      await assert.rejects(outcome, (error: unknown) => {
        assert.ok(error instanceof UploadConflictError);
        assert.equal(error.received, 10);
        assert.match(error.message, /byte 10/);
        return true;
      });
    });
  });

  describe("get", () => {
    it("reads a range of the file and says which bytes of how many it holds", async () => {
      // Prepare
      const { files, backend, kernel } = await started();
      const info = { ...INFO, size: 100 };
      backend.answerHelper = () => ({
        ok: true,
        file: info,
        data: Buffer.from("bcd").toString("base64"),
        range: [1, 3],
      });

      // Act
      const read = await files.get("alice", "k", "a.txt", { start: 1, end: 3 });

      // Assess
      assert.equal(read.bytes.toString(), "bcd");
      assert.deepEqual(read.range, { start: 1, end: 3, total: 100 });
      const request = kernel()?.helpers.at(-1);
      assert.ok(request);
      assert.deepEqual(argsOf(request), {
        op: "read",
        path: "a.txt",
        most: FILE_CHUNK_BYTES,
        limit: 1_000_000,
        start: 1,
        end: 3,
        abandonAfter: 3_600,
      });
    });

    it("reads a whole file with no range", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({
        ok: true,
        file: INFO,
        data: Buffer.from("abc").toString("base64"),
        range: null,
      });

      // Act
      const read = await files.get("alice", "k", "a.txt", undefined);

      // Assess
      assert.equal(read.bytes.toString(), "abc");
      assert.equal(read.range, undefined);
      assert.deepEqual(read.file, INFO);
    });

    it("says a missing file in one wording, whatever the kernel found missing", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({ ok: false, reason: "not_found", message: "no folder 'dir'" });

      // Act
      const read = files.get("alice", "k", "dir/a.txt", undefined);

      // Assess
      await assert.rejects(read, { name: "NotFoundError", message: "no file 'dir/a.txt' in kernel 'k'" });
    });

    it("says a file too large to read whole is 413, and a symbolic link is 400", async () => {
      // Prepare
      const { files, backend } = await started();
      const answers = [
        { ok: false, reason: "too_large", message: "read it in parts with Range", size: 5e6 },
        { ok: false, reason: "invalid", message: "'a.txt' is a symbolic link" },
      ];
      backend.answerHelper = () => answers.shift();

      // Act
      const tooLarge = files.get("alice", "k", "a.txt", undefined);
      await assert.rejects(tooLarge, { name: "PayloadTooLargeError", message: /Range/ });
      const link = files.get("alice", "k", "a.txt", undefined);

      // Assess
      await assert.rejects(link, { name: "ValidationError", message: /symbolic link/ });
    });

    it("refuses a malformed range before reaching the kernel", async () => {
      // Prepare
      const { files, kernel } = await started();
      const before = opsOf(kernel());

      // Act & assess
      await assert.rejects(files.get("alice", "k", "a.txt", { start: 5, end: 4 }), ValidationError);
      await assert.rejects(files.get("alice", "k", "a.txt", { start: -1 }), ValidationError);
      await assert.rejects(files.get("alice", "k", "a.txt", { start: 0.5 }), ValidationError);
      assert.deepEqual(opsOf(kernel()), before);
    });
  });

  describe("remove and list", () => {
    it("says a folder with content is a conflict", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({
        ok: false,
        reason: "not_empty",
        message: "'d' is a folder with content",
      });

      // Act
      const removal = files.remove("alice", "k", "d");

      // Assess
      await assert.rejects(removal, FolderNotEmptyError);
    });

    it("lists a folder as the kernel found it", async () => {
      // Prepare
      const { files, backend, kernel } = await started();
      const entry = { path: "d/a.txt", size: 3, mtime: INFO.mtime, kind: "file" };
      backend.answerHelper = () => ({ ok: true, files: [entry], truncated: false });

      // Act
      const listing = await files.list("alice", "k", "d/", true);

      // Assess
      assert.deepEqual(listing, { files: [entry], truncated: false });
      const request = kernel()?.helpers.at(-1);
      assert.ok(request);
      assert.deepEqual(argsOf(request), {
        op: "list",
        dir: "d/",
        recursive: true,
        most: 1_000,
        abandonAfter: 3_600,
      });
      await assert.rejects(files.list("alice", "k", "../up", false), ValidationError);
    });

    it("fails with 502 when the kernel answers with something else than the helper's schema", async () => {
      // Prepare
      const { files, backend } = await started();
      backend.answerHelper = () => ({ ok: true, files: "nope" });

      // Act & assess
      await assert.rejects(files.list("alice", "k", "", false), { name: "BackendError" });
    });
  });

  describe("whose kernel, and the lease", () => {
    it("answers another caller's kernel and a stopped one exactly as no kernel, sending nothing", async () => {
      // Prepare
      const { files, lifecycle, backend } = await started();
      await lifecycle.start("alice", { kernelId: "gone" });
      await lifecycle.stop("alice", "gone");
      const sent = backend.kernels.map((kernel) => kernel.helpers.length);

      // Act
      const bobs = files.get("bob", "k", "a.txt", undefined);
      const stopped = files.list("alice", "gone", "", false);

      // Assess
      await assert.rejects(bobs, { name: "NotFoundError", message: "no kernel 'k'" });
      await assert.rejects(stopped, { name: "NotFoundError", message: "no kernel 'gone'" });
      assert.deepEqual(
        backend.kernels.map((kernel) => kernel.helpers.length),
        sent,
      );
    });

    it("waits for the run holding the kernel, and holds the lease itself meanwhile", async () => {
      // Prepare
      const { files, runs, backend, store } = await started();
      const held = backend.pause();
      const run = runs.run("alice", "k", "slow");
      await new Promise((resolve) => setTimeout(resolve, 20));
      let leasedDuringHelper = false;
      backend.answerHelper = async () => {
        leasedDuringHelper = ((await store.get("alice", "k"))?.leaseUntil ?? 0) > Date.now();
        return { ok: true, files: [], truncated: false };
      };
      let listed = false;
      const listing = files.list("alice", "k", "", false).finally(() => {
        listed = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const whileRunning = listed;

      // Act
      held.resume();
      await Promise.all([run, listing]);

      // Assess
      assert.equal(whileRunning, false);
      assert.equal(leasedDuringHelper, true);
      assert.equal((await store.get("alice", "k"))?.leaseUntil, undefined, "the lease is given back");
    });

    it("answers KERNEL_BUSY when the run holds the kernel past the wait", async () => {
      // Prepare
      const { files, runs, backend } = await started({
        settings: { run: { ...testSettings().run, busyWaitMs: 50 } },
      });
      const held = backend.pause();
      const run = runs.run("alice", "k", "slow");
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Act
      const listing = files.list("alice", "k", "", false);

      // Assess
      await assert.rejects(listing, KernelBusyError);
      held.resume();
      await run;
    });

    it("buries a kernel that died under the request and says it is dead", async () => {
      // Prepare
      const { files, backend, store } = await started();
      backend.answerHelper = () => {
        throw new KernelDiedError("gone");
      };

      // Act
      const listing = files.list("alice", "k", "", false);

      // Assess
      await assert.rejects(listing, KernelDeadError);
      assert.equal((await store.get("alice", "k"))?.state, "dead");
    });

    it("bounds the kernel's work by the invocation's deadline", async () => {
      // Prepare
      const { files, backend, kernel } = await started();
      backend.answerHelper = () => ({ ok: true, files: [], truncated: false });

      // Act
      await files.list("alice", "k", "", false, { deadline: Date.now() + 5_000 });

      // Assess
      const request = kernel()?.helpers.at(-1);
      assert.ok(request && request.timeoutMs <= 2_000, `timeout ${request?.timeoutMs}`);
    });
  });

  describe("the kernel's root and abandoned uploads", () => {
    it("records the kernel's root at start, before any run", async () => {
      // Prepare
      const { kernel } = await started();

      // Assess
      assert.deepEqual(opsOf(kernel()), ["root"]);
      assert.deepEqual(kernel()?.ran, []);
    });

    it("sweeps all uploads before a stop, and none when a run holds the kernel", async () => {
      // Prepare
      const { lifecycle, backend, runs } = await started();
      await lifecycle.start("alice", { kernelId: "busy" });
      const first = backend.runningOf("alice", "k");
      const busy = backend.runningOf("alice", "busy");
      const held = backend.pause();
      const run = runs.run("alice", "busy", "slow");
      run.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 20));

      // Act
      await lifecycle.stop("alice", "k");
      await lifecycle.stop("alice", "busy");
      held.resume();

      // Assess
      assert.deepEqual(opsOf(first), ["root", "sweep"]);
      assert.deepEqual(first?.helpers.map((request) => argsOf(request).olderThan).at(-1), 0);
      assert.deepEqual(opsOf(busy), ["root"]);
    });

    it("has the reaper sweep a kernel nobody used for an hour, without counting it as activity", async () => {
      // Prepare
      const { housekeeping, store, backend } = await started();
      const record = await store.get("alice", "k");
      assert.ok(record);
      const quiet = ago(2 * 3_600_000);
      store.put({ ...record, lastActivityAt: quiet });

      // Act
      const report = await housekeeping.reap(24 * 3_600_000);

      // Assess
      const kernel = backend.runningOf("alice", "k");
      assert.deepEqual(opsOf(kernel), ["root", "sweep"]);
      assert.equal(argsOf(kernel?.helpers.at(-1) as HelperRequest<unknown>).olderThan, 3_600);
      assert.equal(report.idle, 0);
      const after = await store.get("alice", "k");
      assert.equal(after?.lastActivityAt, quiet);
      assert.equal(after?.leaseUntil, undefined);
    });

    it("has the reaper sweep an idle kernel before stopping it, and leave a recently used one alone", async () => {
      // Prepare
      const { housekeeping, store, backend, lifecycle } = await started();
      await lifecycle.start("alice", { kernelId: "fresh" });
      const record = await store.get("alice", "k");
      assert.ok(record);
      store.put({ ...record, lastActivityAt: ago(3 * 3_600_000) });
      const idle = backend.runningOf("alice", "k");
      const fresh = backend.runningOf("alice", "fresh");

      // Act
      const report = await housekeeping.reap(2 * 3_600_000);

      // Assess
      assert.equal(report.idle, 1);
      assert.deepEqual(opsOf(idle), ["root", "sweep"]);
      assert.equal(idle?.status, "stopped");
      assert.deepEqual(opsOf(fresh), ["root"]);
    });
  });
});
