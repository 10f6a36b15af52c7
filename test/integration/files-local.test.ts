import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type DynamoDBDocumentClient, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { loadConfig } from "../../lib/config.ts";
import { FILE_CHUNK_BYTES } from "../../lib/core/files.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { createRuntime } from "../../lib/runtime.ts";
import type { SandboxService } from "../../lib/sandbox/service.ts";
import { createDocumentClient } from "../../lib/store/dynamodb.ts";

const OWNER = "files-owner";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Where the kernel under test keeps its temporary uploads: hidden names in its working directory. */
const isTempUpload = (name: string) => name.startsWith(".pybox-upload-");

/**
 * `KernelFiles` through the sandbox service, against real local kernels: bytes go in and out
 * through the kernel itself, and every path rule is the kernel's own (no HTTP in between; the
 * behaviour suite covers that).
 */
describe("kernel files on local kernels", { timeout: 300_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let stateDir: string;
  let base: string;
  let cwd: string;
  let outside: string;
  let sandbox: SandboxService;
  let documents: DynamoDBDocumentClient;

  /** What a Python expression shows in the kernel. */
  async function show(kernelId: string, code: string): Promise<string> {
    const result = await sandbox.run(OWNER, kernelId, code);
    assert.equal(result.error, null, JSON.stringify(result.error));
    return String(result.data[0]?.["text/plain"] ?? "");
  }

  before(async () => {
    dynamo = await startEmbeddedDynamo();
    stateDir = await mkdtemp(join(tmpdir(), "pybox-files-state-"));
    base = await mkdtemp(join(tmpdir(), "pybox-files-"));
    cwd = join(base, "work");
    outside = join(base, "outside");
    await mkdir(cwd);
    await mkdir(outside);
    await writeFile(join(outside, "secret.txt"), "outside the working directory");
    const config = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
    await ensureTable(dynamo.endpoint, config.table);
    const runtime = await createRuntime({ ...config, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } });
    sandbox = runtime.sandbox;
    documents = createDocumentClient(runtime.dynamo);
    await sandbox.start(OWNER, { kernelId: "k", cwd });
  });

  after(async () => {
    await sandbox?.stopAll();
    await dynamo?.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(base, { recursive: true, force: true });
  });

  describe("put and get", () => {
    it("writes a text file (201), replaces it (200) and reads it back as the kernel sees it", async () => {
      // Act
      const first = await sandbox.files.put(OWNER, "k", "notes/hello.txt", Buffer.from("hello\n"), undefined);
      const second = await sandbox.files.put(
        OWNER,
        "k",
        "notes/hello.txt",
        Buffer.from("hello again\n"),
        undefined,
      );
      const read = await sandbox.files.get(OWNER, "k", "notes/hello.txt", undefined);

      // Assess
      assert.ok(first.done && first.created);
      assert.ok(second.done && !second.created);
      assert.equal(read.bytes.toString(), "hello again\n");
      assert.equal(read.range, undefined);
      assert.deepEqual(read.file, second.file);
      assert.equal(read.file.sha256, sha256(Buffer.from("hello again\n")));
      assert.equal(await show("k", "open('notes/hello.txt').read()"), "'hello again\\n'");
    });

    it("round-trips random bytes (NUL and invalid UTF-8 among them) with the same SHA-256", async () => {
      // Prepare
      const bytes = Buffer.concat([Buffer.from([0, 0xff, 0xfe, 0xc3, 0x28]), randomBytes(1024 * 1024)]);

      // Act
      const written = await sandbox.files.put(OWNER, "k", "data/random.bin", bytes, undefined);
      const read = await sandbox.files.get(OWNER, "k", "data/random.bin", undefined);

      // Assess
      assert.ok(written.done);
      assert.equal(written.file.sha256, sha256(bytes));
      assert.equal(written.file.size, bytes.length);
      assert.ok(read.bytes.equals(bytes));
      assert.equal(await show("k", "__import__('os').path.getsize('data/random.bin')"), String(bytes.length));
    });

    it("writes an empty file and reads it whole, also when asked for a range", async () => {
      // Act
      const written = await sandbox.files.put(OWNER, "k", "empty.txt", Buffer.alloc(0), undefined);
      const read = await sandbox.files.get(OWNER, "k", "empty.txt", { start: 0 });

      // Assess
      assert.ok(written.done && written.file.size === 0);
      assert.equal(read.bytes.length, 0);
      assert.equal(read.range, undefined);
    });

    it("keeps the kernel's execution count, `_` and history as they were", async () => {
      // Prepare
      const earlier = await sandbox.run(OWNER, "k", "6 * 7");

      // Act
      await sandbox.files.put(OWNER, "k", "quiet.txt", Buffer.from("x"), undefined);
      await sandbox.files.get(OWNER, "k", "quiet.txt", undefined);
      await sandbox.files.list(OWNER, "k", "", false);
      const later = await sandbox.run(OWNER, "k", "_");

      // Assess
      assert.equal(later.executionCount, (earlier.executionCount ?? 0) + 1);
      assert.deepEqual(later.data, [{ "text/plain": "42" }]);
    });

    it("stays in the folder the kernel started in when the caller's code changes directory", async () => {
      // Prepare
      await show("k", "__import__('os').chdir('/'); __import__('os').getcwd()");

      // Act
      await sandbox.files.put(OWNER, "k", "after-chdir.txt", Buffer.from("rooted"), undefined);

      // Assess
      assert.equal(await readFile(join(cwd, "after-chdir.txt"), "utf8"), "rooted");
      await show("k", `__import__('os').chdir(${JSON.stringify(cwd)})`);
    });
  });

  describe("chunked upload and ranged read", () => {
    const total = 20 * 1024 * 1024 + 12_345;
    const bytes = randomBytes(total);

    it("uploads 20 MB in order, the file appearing under its name only with the last chunk", async (t) => {
      // Act
      const outcomes = [];
      let chunkMs = 0;
      for (let start = 0; start < total; start += FILE_CHUNK_BYTES) {
        const end = Math.min(total, start + FILE_CHUNK_BYTES) - 1;
        const began = performance.now();
        const outcome = await sandbox.files.put(
          OWNER,
          "k",
          "big/upload.bin",
          bytes.subarray(start, end + 1),
          {
            start,
            end,
            total,
          },
        );
        if (start === 0) chunkMs = performance.now() - began;
        outcomes.push(outcome);
        if (end < total - 1) {
          const listing = await sandbox.files.list(OWNER, "k", "big", false);
          assert.deepEqual(listing.files, [], "not under its name, and the temporary file is never listed");
          assert.equal(await show("k", "__import__('os').path.exists('big/upload.bin')"), "False");
        }
      }

      // Assess
      const last = outcomes.at(-1);
      assert.ok(last?.done && last.created);
      assert.equal(last.file.size, total);
      assert.equal(last.file.sha256, sha256(bytes));
      assert.deepEqual(
        outcomes.slice(0, -1).map((outcome) => (outcome.done ? "done" : outcome.progress.received)),
        [1, 2, 3, 4, 5].map((n) => n * FILE_CHUNK_BYTES),
      );
      assert.deepEqual((await readdir(join(cwd, "big"))).filter(isTempUpload), []);
      t.diagnostic(`one ${FILE_CHUNK_BYTES}-byte chunk upload: ${chunkMs.toFixed(0)} ms`);
    });

    it("reads it back in ranges of at most 4 MiB, and refuses it whole with 413", async (t) => {
      // Act
      const parts: Buffer[] = [];
      let rangeMs = 0;
      for (let start = 0; start < total; ) {
        const began = performance.now();
        const read = await sandbox.files.get(OWNER, "k", "big/upload.bin", { start });
        if (start === 0) rangeMs = performance.now() - began;
        assert.ok(read.range);
        assert.equal(read.range.start, start);
        assert.equal(read.range.total, total);
        assert.equal(read.bytes.length, read.range.end - start + 1);
        assert.ok(read.bytes.length <= FILE_CHUNK_BYTES);
        assert.equal(read.file.sha256, sha256(bytes));
        parts.push(read.bytes);
        start = read.range.end + 1;
      }
      const middle = await sandbox.files.get(OWNER, "k", "big/upload.bin", { start: 1_000, end: 1_009 });

      // Assess
      assert.equal(sha256(Buffer.concat(parts)), sha256(bytes));
      assert.equal(parts.length, 6);
      assert.ok(middle.bytes.equals(bytes.subarray(1_000, 1_010)));
      assert.deepEqual(middle.range, { start: 1_000, end: 1_009, total });
      await assert.rejects(sandbox.files.get(OWNER, "k", "big/upload.bin", undefined), {
        name: "PayloadTooLargeError",
        message: /Range/,
      });
      await assert.rejects(sandbox.files.get(OWNER, "k", "big/upload.bin", { start: total }), {
        name: "ValidationError",
      });
      t.diagnostic(`one ${FILE_CHUNK_BYTES}-byte ranged read: ${rangeMs.toFixed(0)} ms`);
    });

    it("refuses a chunk out of order or with another total, leaving the partial upload as it was", async () => {
      // Prepare
      const data = randomBytes(300);
      const chunk = (start: number, end: number, of = 300) =>
        sandbox.files.put(OWNER, "k", "partial.bin", data.subarray(start, end + 1), {
          start,
          end,
          total: of,
        });
      const first = await chunk(0, 99);

      // Act & assess
      assert.deepEqual(first, { done: false, progress: { path: "partial.bin", received: 100 } });
      await assert.rejects(chunk(200, 299), {
        name: "UploadConflictError",
        received: 100,
        message: /byte 100/,
      });
      await assert.rejects(chunk(100, 199, 301), {
        name: "UploadConflictError",
        received: 100,
        message: /300 bytes/,
      });
      const neverBegun = sandbox.files.put(OWNER, "k", "never-begun.bin", data.subarray(100, 200), {
        start: 100,
        end: 199,
        total: 300,
      });
      await assert.rejects(neverBegun, { name: "UploadConflictError", received: 0 });
      const second = await chunk(100, 199);
      const third = await chunk(200, 299);
      assert.deepEqual(second, { done: false, progress: { path: "partial.bin", received: 200 } });
      assert.ok(third.done && third.created && third.file.sha256 === sha256(data));
    });

    it("refuses a file over PYBOX_MAX_FILE_BYTES with 413 before any byte is written", async () => {
      // Prepare
      const existing = await readdir(cwd);

      // Act
      const refused = sandbox.files.put(OWNER, "k", "huge.bin", Buffer.alloc(10), {
        start: 0,
        end: 9,
        total: 100 * 1024 * 1024 + 1,
      });

      // Assess
      await assert.rejects(refused, { name: "PayloadTooLargeError" });
      assert.deepEqual(await readdir(cwd), existing);
    });
  });

  describe("files too large for the server", () => {
    it("refuses to read a file over PYBOX_MAX_FILE_BYTES, even by range, with 413", async () => {
      // Prepare
      await show("k", "open('sparse.bin', 'wb').truncate(100 * 1024 * 1024 + 1)");

      // Act
      const ranged = sandbox.files.get(OWNER, "k", "sparse.bin", { start: 0, end: 9 });

      // Assess
      await assert.rejects(ranged, { name: "PayloadTooLargeError", message: /largest file/ });
      await sandbox.files.remove(OWNER, "k", "sparse.bin");
    });
  });

  describe("list and remove", () => {
    before(async () => {
      await show(
        "k",
        [
          "import os",
          "os.makedirs('tree/sub/deeper', exist_ok=True)",
          "os.makedirs('tree/__pycache__', exist_ok=True)",
          "os.makedirs('tree/.ipynb_checkpoints', exist_ok=True)",
          "open('tree/__pycache__/x.pyc', 'w').close()",
          "open('tree/.ipynb_checkpoints/x.ipynb', 'w').close()",
          "open('tree/b.txt', 'w').write('bb')",
          "open('tree/a.txt', 'w').write('a')",
          "open('tree/sub/c.txt', 'w').write('ccc')",
          "open('tree/.pybox-upload-0123', 'w').close()",
          "os.symlink('a.txt', 'tree/link.txt')",
          "None",
        ].join("\n"),
      );
    });

    it("lists a folder, recursively or not, sorted, with no caches, temporary uploads or links", async () => {
      // Act
      const flat = await sandbox.files.list(OWNER, "k", "tree/", false);
      const deep = await sandbox.files.list(OWNER, "k", "tree", true);

      // Assess
      assert.deepEqual(
        flat.files.map(({ path, kind, size }) => [path, kind, size]),
        [
          ["tree/a.txt", "file", 1],
          ["tree/b.txt", "file", 2],
          ["tree/sub", "dir", 0],
        ],
      );
      assert.deepEqual(
        deep.files.map((entry) => entry.path),
        ["tree/a.txt", "tree/b.txt", "tree/sub", "tree/sub/c.txt", "tree/sub/deeper"],
      );
      assert.equal(deep.truncated, false);
      assert.ok(deep.files.every((entry) => !Number.isNaN(Date.parse(entry.mtime))));
    });

    it("caps a listing at 1,000 entries and says it is truncated", async () => {
      // Prepare
      await show(
        "k",
        "import os\nos.makedirs('many', exist_ok=True)\nfor i in range(1001): open(f'many/{i:04}', 'w').close()",
      );

      // Act
      const listing = await sandbox.files.list(OWNER, "k", "many", false);

      // Assess
      assert.equal(listing.files.length, 1_000);
      assert.equal(listing.truncated, true);
      assert.equal(listing.files[0]?.path, "many/0000");
      assert.equal(listing.files.at(-1)?.path, "many/0999");
    });

    it("deletes a file and an empty folder, refuses a folder with content, and 404s what is missing", async () => {
      // Act
      await sandbox.files.remove(OWNER, "k", "tree/b.txt");
      await sandbox.files.remove(OWNER, "k", "tree/sub/deeper");

      // Assess
      await assert.rejects(sandbox.files.get(OWNER, "k", "tree/b.txt", undefined), {
        name: "NotFoundError",
        message: "no file 'tree/b.txt' in kernel 'k'",
      });
      await assert.rejects(sandbox.files.remove(OWNER, "k", "tree/b.txt"), { name: "NotFoundError" });
      await assert.rejects(sandbox.files.remove(OWNER, "k", "tree/sub"), { name: "FolderNotEmptyError" });
      await assert.rejects(sandbox.files.remove(OWNER, "k", "nowhere/x.txt"), { name: "NotFoundError" });
      await assert.rejects(sandbox.files.list(OWNER, "k", "nowhere", false), { name: "NotFoundError" });
      await assert.rejects(sandbox.files.list(OWNER, "k", "tree/a.txt", false), { name: "ValidationError" });
      assert.equal(await show("k", "__import__('os').path.isdir('tree/sub')"), "True");
    });
  });

  describe("paths that lead out of the working directory", () => {
    before(async () => {
      await symlink("/etc/passwd", join(cwd, "passwd"));
      await symlink(join(outside, "secret.txt"), join(cwd, "secret-link.txt"));
      await symlink(outside, join(cwd, "out"));
      await symlink("..", join(cwd, "up"));
      // Made by the kernel, which may run under a uid of its own (a root server's sandbox).
      await show(
        "k",
        "import os\nos.makedirs('real', exist_ok=True)\nopen('real/inside.txt', 'w').write('inside')",
      );
      await symlink("real", join(cwd, "alias"));
    });

    it("never reads through a symbolic link, wherever it points", async () => {
      await assert.rejects(sandbox.files.get(OWNER, "k", "passwd", undefined), {
        name: "ValidationError",
        message: /symbolic link/,
      });
      await assert.rejects(sandbox.files.get(OWNER, "k", "secret-link.txt", undefined), {
        name: "ValidationError",
      });
    });

    it("never writes through a symbolic link, and leaves its target alone", async () => {
      await assert.rejects(
        sandbox.files.put(OWNER, "k", "passwd", Buffer.from("root::0:0::/:/bin/sh\n"), undefined),
        {
          name: "ValidationError",
          message: /symbolic link/,
        },
      );
      await assert.rejects(sandbox.files.put(OWNER, "k", "secret-link.txt", Buffer.from("x"), undefined), {
        name: "ValidationError",
      });
      await assert.rejects(sandbox.files.remove(OWNER, "k", "secret-link.txt"), { name: "ValidationError" });
      assert.equal(await readFile(join(outside, "secret.txt"), "utf8"), "outside the working directory");
    });

    it("refuses folders that are links out of it (`..` by the back door), for reads, writes and listings", async () => {
      for (const path of ["out/secret.txt", "up/outside/secret.txt", "up/work/real/inside.txt"]) {
        await assert.rejects(
          sandbox.files.get(OWNER, "k", path, undefined),
          { name: "ValidationError" },
          path,
        );
      }
      await assert.rejects(sandbox.files.put(OWNER, "k", "out/planted.txt", Buffer.from("x"), undefined), {
        name: "ValidationError",
      });
      await assert.rejects(
        sandbox.files.put(OWNER, "k", "up/planted/deep.txt", Buffer.from("x"), undefined),
        {
          name: "ValidationError",
        },
      );
      await assert.rejects(sandbox.files.list(OWNER, "k", "up", true), { name: "ValidationError" });
      assert.deepEqual((await readdir(outside)).sort(), ["secret.txt"]);
      assert.deepEqual((await readdir(base)).sort(), ["outside", "work"]);
    });

    it("refuses `..`, absolute and NUL paths before reaching the kernel", async () => {
      for (const path of ["../outside/secret.txt", "/etc/passwd", "a/../../x", "a\0b", "a//b"]) {
        await assert.rejects(
          sandbox.files.get(OWNER, "k", path, undefined),
          { name: "ValidationError" },
          path,
        );
        await assert.rejects(
          sandbox.files.put(OWNER, "k", path, Buffer.from("x"), undefined),
          { name: "ValidationError" },
          path,
        );
      }
    });

    it("follows a folder link that stays inside it", async () => {
      // Act
      const read = await sandbox.files.get(OWNER, "k", "alias/inside.txt", undefined);
      const written = await sandbox.files.put(
        OWNER,
        "k",
        "alias/new.txt",
        Buffer.from("via alias"),
        undefined,
      );

      // Assess
      assert.equal(read.bytes.toString(), "inside");
      assert.ok(written.done && written.created);
      assert.equal(await readFile(join(cwd, "real", "new.txt"), "utf8"), "via alias");
    });
  });

  describe("whose kernel, and when", () => {
    it("answers another caller's kernel and a missing one exactly as no kernel", async () => {
      await assert.rejects(sandbox.files.get("someone-else", "k", "notes/hello.txt", undefined), {
        name: "NotFoundError",
        message: "no kernel 'k'",
      });
      await assert.rejects(sandbox.files.list(OWNER, "no-such-kernel", "", false), {
        name: "NotFoundError",
        message: "no kernel 'no-such-kernel'",
      });
    });

    it("waits for the run that holds the kernel, then does its work", async () => {
      // Prepare
      const running = sandbox.run(
        OWNER,
        "k",
        "import time; time.sleep(1.5); open('by-run.txt', 'w').write('run')",
      );
      await new Promise((resolve) => setTimeout(resolve, 300));

      // Act
      const read = await sandbox.files.get(OWNER, "k", "by-run.txt", undefined);

      // Assess
      assert.equal(read.bytes.toString(), "run");
      assert.equal((await running).status, "ok");
    });

    it("has the reaper remove an upload abandoned for an hour in a quiet kernel, not counting that as use", async () => {
      // Prepare
      const other = join(base, "quiet");
      await mkdir(other);
      await sandbox.start(OWNER, { kernelId: "quiet", cwd: other });
      await sandbox.files.put(OWNER, "quiet", "left.bin", Buffer.alloc(10, 1), {
        start: 0,
        end: 9,
        total: 20,
      });
      await show(
        "quiet",
        [
          "import os, sys, time",
          "for u in sys.modules['_pybox'].files['uploads'].values(): u['at'] -= 7200",
          "for n in os.listdir('.'): os.utime(n, (time.time() - 7200, time.time() - 7200))",
          "None",
        ].join("\n"),
      );
      const quietSince = new Date(Date.now() - 2 * 3_600_000).toISOString();
      await documents.send(
        new UpdateCommand({
          TableName: "kernels",
          Key: { pk: `OWNER#${OWNER}`, sk: "KERNEL#quiet" },
          UpdateExpression: "SET lastActivityAt = :quiet",
          ExpressionAttributeValues: { ":quiet": quietSince },
        }),
      );
      const during = (await readdir(other)).filter(isTempUpload);

      // Act
      const report = await sandbox.reap(24 * 3_600_000);

      // Assess
      assert.equal(during.length, 1);
      assert.deepEqual((await readdir(other)).filter(isTempUpload), []);
      assert.equal(report.idle, 0);
      const kernel = await sandbox.get(OWNER, "quiet");
      assert.equal(kernel.lastActivityAt, quietSince);
      assert.equal(kernel.state, "idle");
      await sandbox.stop(OWNER, "quiet");
    });

    it("removes an abandoned upload when the kernel stops, and answers a stopped kernel with 404", async () => {
      // Prepare
      const other = join(base, "second");
      await mkdir(other);
      await sandbox.start(OWNER, { kernelId: "abandoning", cwd: other });
      await sandbox.files.put(OWNER, "abandoning", "half.bin", Buffer.alloc(10, 1), {
        start: 0,
        end: 9,
        total: 20,
      });
      await sandbox.files.put(OWNER, "abandoning", "sub/half.bin", Buffer.alloc(10, 1), {
        start: 0,
        end: 9,
        total: 20,
      });
      const during = (await readdir(other)).filter(isTempUpload);

      // Act
      await sandbox.stop(OWNER, "abandoning");

      // Assess
      assert.equal(during.length, 1);
      assert.deepEqual((await readdir(other)).filter(isTempUpload), []);
      assert.deepEqual((await readdir(join(other, "sub"))).filter(isTempUpload), []);
      await assert.rejects(sandbox.files.get(OWNER, "abandoning", "half.bin", undefined), {
        name: "NotFoundError",
        message: "no kernel 'abandoning'",
      });
    });
  });
});
