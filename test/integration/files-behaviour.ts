import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type {
  ApiClient,
  BinaryResponse,
  ErrorBody,
  FileEntryBody,
  FileInfoBody,
  FileListingBody,
  UploadProgressBody,
} from "../support/api.ts";
import type { BackendHarness } from "./behaviour.ts";

/** Most file bytes one request or response carries (the contract's `FILE_CHUNK_BYTES`). */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * The `PYBOX_MAX_FILE_BYTES` the suite's server runs with: small enough that a declared 22 MB upload
 * is refused (the default is 100 MiB), big enough for the 20 MB file of the chunked tests.
 */
export const SUITE_MAX_FILE_BYTES = 21 * 1024 * 1024;

/**
 * The `PYBOX_BUSY_WAIT_MS` the suite's server runs with: how long a request waits for a kernel
 * another run holds before 409; between the short (1 s) and the long (6 s) run of the busy tests.
 */
export const SUITE_BUSY_WAIT_MS = 2_500;

/** The size of the large file: 20 MB, not a multiple of the chunk size, so the last chunk is short. */
const BIG_BYTES = 20_000_000;

/** Starts a backend's harness with the variables the suite needs added to the server's environment. */
export type FilesHarnessStarter = (env: Record<string, string>) => Promise<BackendHarness>;

/** What a backend's peer does that the suite must allow for. */
export interface FileTraits {
  /** Label in the suite's name (defaults to the backend name). */
  label?: string;
  /**
   * The kernel's working directory is on this machine's disk (local, a gateway here). A cluster
   * kernel's is the pod's own volume, which goes with the pod: nothing of it outlives a stop.
   */
  sharedDisk?: boolean;
}

const sha256 = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");

/** Asserts an error answer: one of `statuses`, a JSON error with a code and a message, no internals. */
function assertRefused(res: BinaryResponse, statuses: number | readonly number[], what: string): ErrorBody {
  const allowed = typeof statuses === "number" ? [statuses] : statuses;
  assert.ok(
    allowed.includes(res.status),
    `${what}: expected ${allowed.join(" or ")}, got ${res.status} ${res.text}`,
  );
  assert.match(res.headers.get("content-type") ?? "", /json/, `${what}: error is JSON`);
  const body = res.body as ErrorBody | null;
  assert.equal(typeof body?.error?.code, "string", `${what}: ${res.text}`);
  assert.ok((body?.error.message.length ?? 0) > 0, `${what}: the error has a message`);
  assert.doesNotMatch(res.text, /at .*\.ts:\d+|node_modules|Traceback/, `${what}: no internals`);
  return body as ErrorBody;
}

/** The parsed JSON body of a success, asserting its status. */
function okBody<T>(res: BinaryResponse<unknown>, status: number, what: string): T {
  assert.equal(res.status, status, `${what}: ${res.text.slice(0, 500)}`);
  assert.ok(res.body !== null, `${what}: a JSON body`);
  return res.body as T;
}

/** An error answer with the kernel id taken out, to compare two 404s for sameness. */
function errorShape(res: BinaryResponse, kernelId: string) {
  const body = res.body as ErrorBody | null;
  return {
    status: res.status,
    contentType: res.headers.get("content-type"),
    code: body?.error.code,
    message: body?.error.message.replaceAll(kernelId, "<kernel>"),
  };
}

/** 1 MiB of random bytes that surely holds NUL bytes and sequences that are not UTF-8. */
function binaryBlob(): Buffer {
  const bytes = randomBytes(1024 * 1024);
  const awkward = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0xc0, 0x80, 0xed, 0xa0, 0x80, 0x00, 0x0d, 0x0a, 0x1a]);
  awkward.copy(bytes, 0);
  awkward.copy(bytes, bytes.length - awkward.length);
  return bytes;
}

/**
 * Files in and out of a kernel through the HTTP API, as a user checks them: round trips (text,
 * binary, a CSV pandas reads), a 20 MB chunked upload and ranged downloads, listing, delete, the
 * artifacts of a run, refused paths and symlinks, owners, stopped kernels and the size limits.
 * One suite, run per backend; the server runs with `PYBOX_MAX_FILE_BYTES` = {@link SUITE_MAX_FILE_BYTES}
 * and `PYBOX_BUSY_WAIT_MS` = {@link SUITE_BUSY_WAIT_MS}.
 */
export function describeFileBehaviour(
  backend: string,
  startHarness: FilesHarnessStarter,
  traits: FileTraits = {},
): void {
  describe(`files API on the ${traits.label ?? backend} backend`, { timeout: 900_000 }, () => {
    let harness: BackendHarness;
    let api: ApiClient;
    const kernel = "files";
    /** The kernel's working directory, as the kernel itself names it. */
    let root: string;

    /** Runs `code` in a kernel, then returns the JSON value of `expression` there. */
    async function inKernel<T>(kernelId: string, code: string, expression: string): Promise<T> {
      const res = await api.run(kernelId, `${code}\nimport json as _json\nprint(_json.dumps(${expression}))`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.status, "ok", res.text);
      const printed = res.body.data.map((bundle) => String(bundle["text/plain"] ?? "")).join("");
      return JSON.parse(printed.trim().split("\n").at(-1) ?? "null") as T;
    }

    before(async () => {
      harness = await startHarness({
        PYBOX_MAX_FILE_BYTES: String(SUITE_MAX_FILE_BYTES),
        PYBOX_BUSY_WAIT_MS: String(SUITE_BUSY_WAIT_MS),
      });
      api = harness.api.as("alice");
      const started = await api.start({ kernelId: kernel });
      assert.equal(started.status, 201, started.text);
      root = await inKernel<string>(kernel, "import os", "os.getcwd()");
    });

    after(async () => {
      await harness?.stop();
    });

    describe("round trips", () => {
      it("writes a text file (parent folders made) and reads the same bytes back", async () => {
        // Prepare
        const text = "héllo wörld ✓\nsecond line\n";

        // Act
        const put = await api.putFile(kernel, "notes/hello.txt", text, { contentType: "text/plain" });
        const got = await api.getFile(kernel, "notes/hello.txt");
        const seen = await inKernel<string>(kernel, "", "open('notes/hello.txt', encoding='utf-8').read()");

        // Assess
        const info = okBody<FileInfoBody>(put, 201, "new file");
        assert.equal(info.path, "notes/hello.txt");
        assert.equal(info.size, Buffer.byteLength(text));
        assert.equal(info.sha256, sha256(text));
        assert.ok(Number.isFinite(Date.parse(info.mtime)), info.mtime);
        assert.equal(got.status, 200, got.text);
        assert.equal(got.bytes.toString("utf8"), text);
        assert.match(got.headers.get("content-type") ?? "", /^text\/plain/);
        assert.equal(got.headers.get("content-length"), String(Buffer.byteLength(text)));
        assert.match(got.headers.get("etag") ?? "", new RegExp(sha256(text)));
        assert.equal(got.headers.get("accept-ranges"), "bytes");
        assert.equal(seen, text);
      });

      it("replaces a file with 200 and the new bytes", async () => {
        const put = await api.putFile(kernel, "notes/hello.txt", "replaced\n");
        const got = await api.getFile(kernel, "notes/hello.txt");

        const info = okBody<FileInfoBody>(put, 200, "replaced file");
        assert.equal(info.size, 9);
        assert.equal(info.sha256, sha256("replaced\n"));
        assert.equal(got.bytes.toString(), "replaced\n");
      });

      it("keeps 1 MiB of random bytes (NUL, invalid UTF-8) identical, in the kernel and back", async () => {
        // Prepare
        const blob = binaryBlob();

        // Act
        const put = await api.putFile(kernel, "bin/random.bin", blob);
        const got = await api.getFile(kernel, "bin/random.bin");
        const inside = await inKernel<[number, string]>(
          kernel,
          "import hashlib\n_b = open('bin/random.bin', 'rb').read()",
          "[len(_b), hashlib.sha256(_b).hexdigest()]",
        );

        // Assess
        const info = okBody<FileInfoBody>(put, 201, "binary upload");
        assert.equal(info.size, blob.length);
        assert.equal(info.sha256, sha256(blob));
        assert.deepEqual(inside, [blob.length, sha256(blob)]);
        assert.equal(got.status, 200, got.text);
        assert.equal(got.bytes.length, blob.length);
        assert.equal(sha256(got.bytes), sha256(blob));
        assert.match(got.headers.get("content-type") ?? "", /^application\/octet-stream/);
        assert.match(got.headers.get("etag") ?? "", new RegExp(sha256(blob)));
      });

      it("uploads a CSV that pandas reads in the kernel", async () => {
        const csv = "region,amount\nnorth,10\nsouth,32\n";

        const put = await api.putFile(kernel, "data/sales.csv", csv, { contentType: "text/csv" });
        const total = await api.eval(
          kernel,
          "import pandas as pd\nint(pd.read_csv('data/sales.csv').amount.sum())",
        );

        assert.equal(put.status, 201, put.text);
        assert.equal(total, "42");
      });

      it("keeps an empty file empty", async () => {
        const put = await api.putFile(kernel, "empty.txt", Buffer.alloc(0));
        const got = await api.getFile(kernel, "empty.txt");

        const info = okBody<FileInfoBody>(put, 201, "empty file");
        assert.equal(info.size, 0);
        assert.equal(info.sha256, sha256(""));
        assert.equal(got.status, 200, got.text);
        assert.equal(got.bytes.length, 0);
      });

      it("takes names with spaces and non-ASCII letters, encoded per segment", async () => {
        const path = "données/résumé final.txt";

        const put = await api.putFile(kernel, path, "ok");
        const got = await api.getFile(kernel, path);
        const exists = await inKernel<boolean>(
          kernel,
          "import os",
          `os.path.isfile(${JSON.stringify(path)})`,
        );

        assert.equal(okBody<FileInfoBody>(put, 201, "non-ASCII name").path, path);
        assert.equal(got.bytes.toString(), "ok");
        assert.equal(exists, true);
      });

      it("takes a name of exactly 255 bytes", async () => {
        const name = `${"é".repeat(100)}${"n".repeat(55)}`;
        assert.equal(Buffer.byteLength(name), 255);

        const put = await api.putFile(kernel, `long/${name}`, "x");
        const got = await api.getFile(kernel, `long/${name}`);

        assert.equal(put.status, 201, put.text);
        assert.equal(got.bytes.toString(), "x");
      });

      it("keeps paths relative to the kernel's starting folder after user code changes directory", async () => {
        await api.run(kernel, "import os\nos.makedirs('elsewhere', exist_ok=True)\nos.chdir('elsewhere')");
        try {
          const got = await api.getFile(kernel, "notes/hello.txt");
          const put = await api.putFile(kernel, "notes/after-chdir.txt", "here");
          const placed = await inKernel<boolean>(
            kernel,
            "",
            `os.path.isfile(os.path.join(${JSON.stringify(root)}, 'notes', 'after-chdir.txt'))`,
          );

          assert.equal(got.bytes.toString(), "replaced\n");
          assert.equal(put.status, 201, put.text);
          assert.equal(placed, true);
        } finally {
          await api.run(kernel, `os.chdir(${JSON.stringify(root)})`);
        }
      });

      it("gives a file a new ETag when the kernel changes it", async () => {
        await api.putFile(kernel, "notes/etag.txt", "first");
        const before = await api.getFile(kernel, "notes/etag.txt", { range: { start: 0, end: 1 } });
        await api.run(kernel, "open('notes/etag.txt', 'w').write('second')");

        const after = await api.getFile(kernel, "notes/etag.txt", { range: { start: 0, end: 1 } });

        assert.match(before.headers.get("etag") ?? "", new RegExp(sha256("first")));
        assert.match(after.headers.get("etag") ?? "", new RegExp(sha256("second")));
        assert.equal(after.bytes.toString(), "se");
      });

      it("refuses a write below a file or onto a folder with a 4xx, changing nothing", async () => {
        const belowFile = await api.putFile(kernel, "notes/hello.txt/child", "x");
        const ontoDir = await api.putFile(kernel, "notes", "x");
        const got = await api.getFile(kernel, "notes/hello.txt");

        assertRefused(belowFile, [400, 404, 409], "a write below a file");
        assertRefused(ontoDir, [400, 409], "a write onto a folder");
        assert.equal(got.bytes.toString(), "replaced\n");
      });
    });

    describe("a 20 MB file in 4 MiB chunks", () => {
      const big = randomBytes(BIG_BYTES);
      const path = "big/twenty.bin";

      it("accepts each chunk with 202 and the bytes received, then 201; nothing shows under the name before", async () => {
        // Act
        const first = await api.putFile(kernel, path, big.subarray(0, CHUNK_BYTES), {
          contentRange: { start: 0, end: CHUNK_BYTES - 1, total: BIG_BYTES },
        });
        const midway = await api.getFile(kernel, path);
        const listedMidway = await api.listFiles(kernel, { path: "big/" });
        const rest: BinaryResponse[] = [];
        for (let start = CHUNK_BYTES; start < BIG_BYTES; start += CHUNK_BYTES) {
          const end = Math.min(start + CHUNK_BYTES, BIG_BYTES) - 1;
          rest.push(
            await api.putFile(kernel, path, big.subarray(start, end + 1), {
              contentRange: { start, end, total: BIG_BYTES },
            }),
          );
        }

        // Assess
        assert.deepEqual(okBody<UploadProgressBody>(first, 202, "first chunk"), {
          path,
          received: CHUNK_BYTES,
        });
        assert.equal(midway.status, 404, `the file is not there before its last chunk: ${midway.text}`);
        if (listedMidway.status === 200) {
          assert.deepEqual(listedMidway.body?.files ?? [], [], "no entry (nor temp file) while uploading");
        } else {
          assert.equal(listedMidway.status, 404, listedMidway.text);
        }
        const last = rest.pop();
        rest.forEach((res, i) => {
          const received = Math.min((i + 2) * CHUNK_BYTES, BIG_BYTES);
          assert.deepEqual(okBody<UploadProgressBody>(res, 202, `chunk ${i + 2}`), { path, received });
        });
        assert.ok(last);
        const info = okBody<FileInfoBody>(last, 201, "last chunk");
        assert.equal(info.path, path);
        assert.equal(info.size, BIG_BYTES);
        assert.equal(info.sha256, sha256(big));
      });

      it("serves it in ranges: 206, Content-Range, the same bytes", async () => {
        const parts: Buffer[] = [];
        for (let start = 0; start < BIG_BYTES; start += CHUNK_BYTES) {
          const end = Math.min(start + CHUNK_BYTES, BIG_BYTES) - 1;

          const res = await api.getFile(kernel, path, { range: { start, end } });

          assert.equal(res.status, 206, res.text.slice(0, 300));
          assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/${BIG_BYTES}`);
          assert.equal(res.headers.get("content-length"), String(end - start + 1));
          assert.match(res.headers.get("etag") ?? "", new RegExp(sha256(big)));
          assert.ok(res.bytes.equals(big.subarray(start, end + 1)), `bytes ${start}-${end} differ`);
          parts.push(res.bytes);
        }
        assert.equal(sha256(Buffer.concat(parts)), sha256(big));
      });

      it("serves a small range in the middle and the last bytes", async () => {
        const middle = await api.getFile(kernel, path, { range: { start: 12_345_678, end: 12_345_687 } });
        const tail = await api.getFile(kernel, path, { range: { start: BIG_BYTES - 10 } });

        assert.equal(middle.status, 206, middle.text);
        assert.ok(middle.bytes.equals(big.subarray(12_345_678, 12_345_688)));
        assert.equal(tail.status, 206, tail.text);
        assert.equal(
          tail.headers.get("content-range"),
          `bytes ${BIG_BYTES - 10}-${BIG_BYTES - 1}/${BIG_BYTES}`,
        );
        assert.ok(tail.bytes.equals(big.subarray(BIG_BYTES - 10)));
      });

      it("caps an open-ended range at 4 MiB and says which bytes it sent", async () => {
        const res = await api.getFile(kernel, path, { range: { start: 1_000 } });

        assert.equal(res.status, 206, res.text.slice(0, 300));
        const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get("content-range") ?? "");
        assert.ok(match, `content-range: ${res.headers.get("content-range")}`);
        const [start, end, total] = match.slice(1).map(Number) as [number, number, number];
        assert.equal(start, 1_000);
        assert.equal(total, BIG_BYTES);
        assert.ok(end - start + 1 <= CHUNK_BYTES, `sent ${end - start + 1} bytes`);
        assert.ok(res.bytes.equals(big.subarray(start, end + 1)));
      });

      it("refuses a range that starts past the end (400, or HTTP's 416)", async () => {
        const res = await api.getFile(kernel, path, { range: { start: BIG_BYTES, end: BIG_BYTES + 10 } });

        assertRefused(res, [400, 416], "range past the end");
      });

      it("refuses a whole-file GET with 413 saying to use Range", async () => {
        const res = await api.getFile(kernel, path);

        const body = assertRefused(res, 413, "whole 20 MB GET");
        assert.match(body.error.message, /range/i);
      });

      it("replaces it in chunks: the old bytes stay readable until the last chunk, then 200", async () => {
        // Prepare
        const replacement = randomBytes(6 * 1024 * 1024 + 7);

        // Act
        const first = await api.putFile(kernel, path, replacement.subarray(0, CHUNK_BYTES), {
          contentRange: { start: 0, end: CHUNK_BYTES - 1, total: replacement.length },
        });
        const during = await api.getFile(kernel, path, { range: { start: 0, end: 99 } });
        const last = await api.putFile(kernel, path, replacement.subarray(CHUNK_BYTES), {
          contentRange: { start: CHUNK_BYTES, end: replacement.length - 1, total: replacement.length },
        });
        const afterwards = await api.getFile(kernel, path, {
          range: { start: CHUNK_BYTES, end: replacement.length - 1 },
        });

        // Assess
        assert.equal(first.status, 202, first.text);
        assert.equal(during.status, 206, during.text);
        assert.ok(during.bytes.equals(big.subarray(0, 100)), "the old file is intact mid-upload");
        const info = okBody<FileInfoBody>(last, 200, "replacing upload");
        assert.equal(info.size, replacement.length);
        assert.equal(info.sha256, sha256(replacement));
        assert.equal(afterwards.status, 206, afterwards.text);
        assert.ok(afterwards.bytes.equals(replacement.subarray(CHUNK_BYTES)));
      });
    });

    describe("chunked uploads that go wrong", () => {
      const MiB = 1024 * 1024;

      it("refuses a chunk out of order or with another total, a body longer or shorter than its range; the partial upload is unchanged", async () => {
        // Prepare
        const whole = randomBytes(3 * MiB);
        const path = "chunks/partial.bin";
        const first = await api.putFile(kernel, path, whole.subarray(0, MiB), {
          contentRange: { start: 0, end: MiB - 1, total: whole.length },
        });
        assert.deepEqual(okBody<UploadProgressBody>(first, 202, "first chunk"), { path, received: MiB });

        // Act
        const skipped = await api.putFile(kernel, path, whole.subarray(2 * MiB), {
          contentRange: { start: 2 * MiB, end: 3 * MiB - 1, total: whole.length },
        });
        const otherTotal = await api.putFile(kernel, path, whole.subarray(MiB, 2 * MiB), {
          contentRange: { start: MiB, end: 2 * MiB - 1, total: 4 * MiB },
        });
        const longer = await api.putFile(kernel, path, whole.subarray(MiB, MiB + 200), {
          contentRange: { start: MiB, end: MiB + 99, total: whole.length },
        });
        const shorter = await api.putFile(kernel, path, whole.subarray(MiB, MiB + 50), {
          contentRange: { start: MiB, end: MiB + 99, total: whole.length },
        });
        const missing = await api.getFile(kernel, path);
        const second = await api.putFile(kernel, path, whole.subarray(MiB, 2 * MiB), {
          contentRange: { start: MiB, end: 2 * MiB - 1, total: whole.length },
        });
        const third = await api.putFile(kernel, path, whole.subarray(2 * MiB), {
          contentRange: { start: 2 * MiB, end: 3 * MiB - 1, total: whole.length },
        });
        const got = await api.getFile(kernel, path);

        // Assess
        assertRefused(skipped, [400, 409], "a chunk past the bytes received");
        assertRefused(otherTotal, [400, 409], "a chunk with another total");
        assertRefused(longer, 400, "a body longer than its Content-Range");
        assertRefused(shorter, 400, "a body shorter than its Content-Range");
        assert.equal(missing.status, 404, "no file under the name while the upload is partial");
        assert.deepEqual(okBody<UploadProgressBody>(second, 202, "the right next chunk"), {
          path,
          received: 2 * MiB,
        });
        const info = okBody<FileInfoBody>(third, 201, "the last chunk");
        assert.equal(info.sha256, sha256(whole));
        assert.equal(sha256(got.bytes), sha256(whole));
      });

      it("starts an upload over when a chunk at 0 comes again (or refuses it), never mixing the two", async () => {
        // Prepare
        const path = "chunks/restarted.bin";
        const abandoned = randomBytes(2 * MiB);
        const fresh = randomBytes(3 * MiB);
        await api.putFile(kernel, path, abandoned.subarray(0, MiB), {
          contentRange: { start: 0, end: MiB - 1, total: abandoned.length },
        });

        // Act
        const again = await api.putFile(kernel, path, fresh.subarray(0, MiB), {
          contentRange: { start: 0, end: MiB - 1, total: fresh.length },
        });

        // Assess
        if (again.status === 202) {
          // Started over: the new upload's total rules, the old one's chunks are refused.
          assert.deepEqual(again.body, { path, received: MiB });
          const old = await api.putFile(kernel, path, abandoned.subarray(MiB), {
            contentRange: { start: MiB, end: 2 * MiB - 1, total: abandoned.length },
          });
          assertRefused(old, [400, 409], "a chunk of the upload that was started over");
          const rest = await api.putFile(kernel, path, fresh.subarray(MiB), {
            contentRange: { start: MiB, end: fresh.length - 1, total: fresh.length },
          });
          assert.equal(okBody<FileInfoBody>(rest, 201, "the new upload's last chunk").sha256, sha256(fresh));
        } else {
          assertRefused(again, [400, 409], "a chunk at 0 during an upload");
          const rest = await api.putFile(kernel, path, abandoned.subarray(MiB), {
            contentRange: { start: MiB, end: 2 * MiB - 1, total: abandoned.length },
          });
          assert.equal(
            okBody<FileInfoBody>(rest, 201, "the first upload's last chunk").sha256,
            sha256(abandoned),
          );
        }
      });

      it("refuses a first chunk that does not start at 0 (no upload under way)", async () => {
        const res = await api.putFile(kernel, "chunks/late-start.bin", Buffer.alloc(10), {
          contentRange: { start: 10, end: 19, total: 30 },
        });
        const got = await api.getFile(kernel, "chunks/late-start.bin");

        assertRefused(res, [400, 409], "a first chunk at 10");
        assert.equal(got.status, 404);
      });

      for (const [label, header] of [
        ["no total", "bytes 0-9"],
        ["end before start", "bytes 9-0/10"],
        ["end at the total", "bytes 0-10/10"],
        ["another unit", "items 0-9/10"],
        ["an unknown total", "bytes 0-9/*"],
        ["an unsatisfied-range form", "bytes */10"],
        ["negative numbers", "bytes -1-8/10"],
        ["text", "bytes a-b/c"],
      ] as const) {
        it(`refuses a Content-Range with ${label} (${header}) with 400`, async () => {
          const path = `chunks/malformed-${label.replaceAll(" ", "-")}.bin`;

          const res = await api.putFile(kernel, path, Buffer.alloc(10), { contentRange: header });
          const got = await api.getFile(kernel, path);

          assertRefused(res, 400, header);
          assert.equal(got.status, 404);
        });
      }

      it("takes a whole file as one chunk (bytes 0-9/10) with 201", async () => {
        const bytes = randomBytes(10);

        const res = await api.putFile(kernel, "chunks/one.bin", bytes, {
          contentRange: { start: 0, end: 9, total: 10 },
        });
        const got = await api.getFile(kernel, "chunks/one.bin");

        assert.equal(okBody<FileInfoBody>(res, 201, "one-chunk upload").sha256, sha256(bytes));
        assert.ok(got.bytes.equals(bytes));
      });
    });

    describe("size limits", () => {
      it("refuses an upload declared over PYBOX_MAX_FILE_BYTES with 413 before writing a byte", async () => {
        const res = await api.putFile(kernel, "limits/huge.bin", randomBytes(1024), {
          contentRange: { start: 0, end: 1023, total: SUITE_MAX_FILE_BYTES + 1 },
        });
        const got = await api.getFile(kernel, "limits/huge.bin");
        const left = await inKernel<string[]>(
          kernel,
          "import os",
          "sorted(os.listdir('limits')) if os.path.isdir('limits') else []",
        );

        assertRefused(res, 413, "declared total over the limit");
        assert.equal(got.status, 404);
        assert.deepEqual(left, [], "no temporary file left");
      });

      it("accepts an upload declared at exactly PYBOX_MAX_FILE_BYTES (first chunk)", async () => {
        const res = await api.putFile(kernel, "limits/at-limit.bin", randomBytes(1024), {
          contentRange: { start: 0, end: 1023, total: SUITE_MAX_FILE_BYTES },
        });

        assert.equal(res.status, 202, res.text);
      });

      it("refuses a single PUT over 4 MiB with 413", async () => {
        const res = await api.putFile(kernel, "limits/one-shot.bin", randomBytes(CHUNK_BYTES + 1));
        const got = await api.getFile(kernel, "limits/one-shot.bin");

        assertRefused(res, 413, "one request over 4 MiB");
        assert.equal(got.status, 404);
      });

      it("refuses a chunk over 4 MiB with 413", async () => {
        const res = await api.putFile(kernel, "limits/fat-chunk.bin", randomBytes(CHUNK_BYTES + 1), {
          contentRange: { start: 0, end: CHUNK_BYTES, total: 2 * CHUNK_BYTES },
        });

        assertRefused(res, 413, "a chunk over 4 MiB");
      });
    });

    describe("listing", () => {
      before(async () => {
        for (const [path, bytes] of [
          ["listing/a.txt", "abc"],
          ["listing/sub/b.bin", "12345"],
          ["listing/sub/deeper/c.txt", "c"],
        ] as const) {
          const res = await api.putFile(kernel, path, bytes);
          assert.equal(res.status, 201, res.text);
        }
      });

      const shape = (files: FileEntryBody[]) =>
        files.map(({ path, kind, size }) => (kind === "dir" ? { path, kind } : { path, kind, size }));

      it("lists one folder's entries with kinds and sizes, sorted", async () => {
        const res = await api.listFiles(kernel, { path: "listing/" });

        const listing = okBody<FileListingBody>(res, 200, "listing");
        assert.equal(listing.truncated, false);
        assert.deepEqual(shape(listing.files), [
          { path: "listing/a.txt", kind: "file", size: 3 },
          { path: "listing/sub", kind: "dir" },
        ]);
        for (const entry of listing.files) assert.ok(Number.isFinite(Date.parse(entry.mtime)), entry.mtime);
      });

      it("lists everything below a folder when recursive", async () => {
        const res = await api.listFiles(kernel, { path: "listing", recursive: true });

        assert.deepEqual(shape(okBody<FileListingBody>(res, 200, "recursive listing").files), [
          { path: "listing/a.txt", kind: "file", size: 3 },
          { path: "listing/sub", kind: "dir" },
          { path: "listing/sub/b.bin", kind: "file", size: 5 },
          { path: "listing/sub/deeper", kind: "dir" },
          { path: "listing/sub/deeper/c.txt", kind: "file", size: 1 },
        ]);
      });

      it("lists the working directory without a path", async () => {
        const res = await api.listFiles(kernel);

        const paths = okBody<FileListingBody>(res, 200, "root listing").files.map((entry) => entry.path);
        assert.ok(paths.includes("listing"), paths.join(", "));
        assert.ok(paths.includes("empty.txt"), paths.join(", "));
        assert.ok(!paths.includes("listing/a.txt"), "not recursive by default");
      });

      it("leaves out uploads under way, __pycache__ and .ipynb_checkpoints", async () => {
        await api.putFile(kernel, "listing/partial.bin", Buffer.alloc(10), {
          contentRange: { start: 0, end: 9, total: 20 },
        });
        await api.run(
          kernel,
          "import os\nfor d in ('listing/__pycache__', 'listing/.ipynb_checkpoints'):\n    os.makedirs(d, exist_ok=True)\n    open(os.path.join(d, 'x'), 'w').write('x')",
        );

        const res = await api.listFiles(kernel, { path: "listing", recursive: true });

        const paths = okBody<FileListingBody>(res, 200, "listing").files.map((entry) => entry.path);
        assert.ok(
          paths.every((path) => !/pybox-upload|partial\.bin|__pycache__|ipynb_checkpoints/.test(path)),
          paths.join(", "),
        );
      });

      it("stops at 1,000 entries and says it was truncated", async () => {
        await api.run(
          kernel,
          "import os\nos.makedirs('crowd', exist_ok=True)\nfor i in range(1005):\n    open(f'crowd/f{i:04d}.txt', 'w').close()",
        );

        const res = await api.listFiles(kernel, { path: "crowd/" });

        const listing = okBody<FileListingBody>(res, 200, "crowded listing");
        assert.equal(listing.truncated, true);
        assert.equal(listing.files.length, 1000);
        assert.equal(listing.files[0]?.path, "crowd/f0000.txt");
      });

      it("answers 404 for a folder that does not exist", async () => {
        const res = await api.listFiles(kernel, { path: "no-such-folder/" });

        assertRefused(res, 404, "missing folder");
      });

      for (const [label, query] of [
        ["an absolute path", "path=%2Fetc"],
        ["a .. path", "path=..%2F"],
        ["a nested .. path", "path=listing%2F..%2F..%2F"],
        ["a NUL byte", "path=a%00b"],
        ["recursive that is not a boolean", "recursive=maybe"],
      ] as const) {
        it(`refuses a listing with ${label} with 400`, async () => {
          const res = await api.raw("GET", `/kernels/${kernel}/files?${query}`);

          assertRefused(res, 400, label);
        });
      }
    });

    describe("delete", () => {
      it("removes a file with 204, after which it is 404 to read and to delete", async () => {
        await api.putFile(kernel, "trash/x.txt", "bye");

        const removed = await api.deleteFile(kernel, "trash/x.txt");
        const read = await api.getFile(kernel, "trash/x.txt");
        const again = await api.deleteFile(kernel, "trash/x.txt");
        const listed = await api.listFiles(kernel, { path: "trash/" });

        assert.equal(removed.status, 204, removed.text);
        assert.equal(removed.bytes.length, 0);
        assertRefused(read, 404, "read after delete");
        assert.equal(read.body?.error.code, "NOT_FOUND");
        assertRefused(again, 404, "delete after delete");
        assert.deepEqual(okBody<FileListingBody>(listed, 200, "listing").files, []);
      });

      it("answers 404 for a file that never existed", async () => {
        const read = await api.getFile(kernel, "never/was.txt");
        const removed = await api.deleteFile(kernel, "never/was.txt");

        assert.equal(assertRefused(read, 404, "missing file").error.code, "NOT_FOUND");
        assert.equal(assertRefused(removed, 404, "missing file").error.code, "NOT_FOUND");
      });

      it("refuses to remove a folder with content, and keeps the content", async () => {
        await api.putFile(kernel, "trash/keep/inner.txt", "inner");

        const res = await api.deleteFile(kernel, "trash/keep");
        const got = await api.getFile(kernel, "trash/keep/inner.txt");

        assertRefused(res, [400, 409], "a folder with content");
        assert.equal(got.bytes.toString(), "inner");
      });
    });

    describe("artifacts of a run", () => {
      const paths = (res: { body: { artifacts?: Array<{ path: string }> } }) =>
        (res.body.artifacts ?? []).map((artifact) => artifact.path);

      before(async () => {
        // The first imports may write caches (matplotlib's font list) under the working directory.
        await api.run(kernel, "import time, os\nimport pandas as pd\nimport matplotlib.pyplot as plt");
        await api.run(kernel, "pass");
      });

      it("lists the chart and the CSV a run wrote, newest first, with their sizes", async () => {
        const code = [
          "plt.plot([1, 2, 3], [1, 4, 9])",
          "plt.savefig('chart.png')",
          "plt.close()",
          "time.sleep(0.05)",
          "pd.DataFrame({'x': [1, 2]}).to_csv('out.csv', index=False)",
        ].join("\n");

        const res = await api.run(kernel, code);
        const chart = await api.getFile(kernel, "chart.png");
        const csv = await api.getFile(kernel, "out.csv");

        assert.equal(res.body.status, "ok", res.text);
        assert.deepEqual(paths(res), ["out.csv", "chart.png"], res.text);
        const [csvArtifact, chartArtifact] = res.body.artifacts ?? [];
        assert.equal(csvArtifact?.size, 6);
        assert.equal(chartArtifact?.size, chart.bytes.length);
        assert.ok(Number.isFinite(Date.parse(String(chartArtifact?.mtime))));
        assert.equal(res.body.artifactsTruncated ?? false, false);
        assert.equal(chart.status, 200, chart.text);
        assert.match(chart.headers.get("content-type") ?? "", /^image\/png/);
        assert.deepEqual([...chart.bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
        assert.equal(csv.bytes.toString(), "x\n1\n2\n");
        assert.match(csv.headers.get("content-type") ?? "", /^text\/csv/);
      });

      it("gives artifacts [] for a run that changed no file", async () => {
        const res = await api.run(kernel, "y = 1");

        assert.deepEqual(res.body.artifacts, [], res.text);
      });

      it("lists a file a run changed, and one in a subfolder by its path", async () => {
        const res = await api.run(
          kernel,
          "open('out.csv', 'a').write('3\\n')\nos.makedirs('plots', exist_ok=True)\nopen('plots/p.txt', 'w').write('p')",
        );

        assert.deepEqual(new Set(paths(res)), new Set(["out.csv", "plots/p.txt"]), res.text);
      });

      it("leaves out files uploaded between runs, uploads under way and __pycache__", async () => {
        await api.putFile(kernel, "mymod.py", "def f():\n    return 7\n");
        await api.putFile(kernel, "pending.bin", Buffer.alloc(10), {
          contentRange: { start: 0, end: 9, total: 20 },
        });

        const res = await api.run(
          kernel,
          "import sys\nsys.dont_write_bytecode = False\nimport mymod\nmymod.f()",
        );

        assert.deepEqual(res.body.data, [{ "text/plain": "7" }], res.text);
        assert.deepEqual(paths(res), [], res.text);
      });

      it("caps the list at 100 and says so", async () => {
        const res = await api.run(
          kernel,
          "os.makedirs('many', exist_ok=True)\nfor i in range(120):\n    open(f'many/{i:03d}.txt', 'w').write(str(i))",
        );

        assert.equal(res.body.artifacts?.length, 100, res.text.slice(0, 500));
        assert.equal(res.body.artifactsTruncated, true);
      });
    });

    describe("refused paths", () => {
      const marker = `escaped-${randomBytes(4).toString("hex")}`;
      const probe = "paths";
      let listingBefore: string[];

      before(async () => {
        const started = await api.start({ kernelId: probe });
        assert.equal(started.status, 201, started.text);
        listingBefore =
          (await api.listFiles(probe)).body?.files.map((entry) => `${entry.kind}:${entry.path}`) ?? [];
      });

      const longPath = Array.from({ length: 17 }, (_, i) => `${String(i).padStart(2, "0")}${"s".repeat(240)}`)
        .concat(marker)
        .join("/");
      const cases: Array<[string, string]> = [
        ["an absolute path (encoded)", `%2Ftmp%2F${marker}`],
        ["an absolute path (double slash)", `/tmp/${marker}`],
        ["a .. segment", `../${marker}`],
        ["a .. segment further down", `a/../../${marker}`],
        ["an encoded .. segment", `%2E%2E/${marker}`],
        ["encoded slashes hiding .. (a%2F..%2F..%2Fx)", `a%2F..%2F..%2F${marker}`],
        ["a . segment", `./${marker}`],
        ["an empty segment", `a//${marker}`],
        ["a NUL byte", `nul%00${marker}`],
        ["a name over 255 bytes", `${marker}-${"n".repeat(256)}`],
        ["a path over 4,096 bytes", longPath],
      ];

      for (const [label, path] of cases) {
        it(`refuses ${label} with 400 for PUT, GET and DELETE`, async () => {
          const put = await api.putFile(probe, path, "planted", { rawPath: true });
          const chunk = await api.putFile(probe, path, "planted", {
            rawPath: true,
            contentRange: { start: 0, end: 6, total: 14 },
          });
          const get = await api.getFile(probe, path, { rawPath: true });
          const removed = await api.deleteFile(probe, path, { rawPath: true });

          assertRefused(put, 400, `PUT ${path}`);
          assertRefused(chunk, 400, `chunked PUT ${path}`);
          assertRefused(get, 400, `GET ${path}`);
          assertRefused(removed, 400, `DELETE ${path}`);
        });
      }

      it("refuses .. that would climb out of the files route (DELETE …/files/.., …/files/a/../..)", async () => {
        const up = await api.deleteFile(probe, "..", { rawPath: true });
        const upTwice = await api.deleteFile(probe, "a/../..", { rawPath: true });
        const encoded = await api.deleteFile(probe, "%2e%2e", { rawPath: true });
        const kernelRecord = await api.get(probe);

        assertRefused(up, 400, "DELETE files/..");
        assertRefused(upTwice, 400, "DELETE files/a/../..");
        assertRefused(encoded, 400, "DELETE files/%2e%2e");
        assert.equal(kernelRecord.status, 200, "the kernel was not stopped");
      });

      it("changed nothing: no file or folder appeared, inside the working directory or out of it", async () => {
        const listingAfter =
          (await api.listFiles(probe)).body?.files.map((entry) => `${entry.kind}:${entry.path}`) ?? [];
        const hits = await inKernel<string[]>(
          probe,
          [
            "import os",
            `_marker = ${JSON.stringify(marker)}`,
            "_root = os.getcwd()",
            "_hits = []",
            "for _base in {_root, os.path.dirname(_root), os.path.dirname(os.path.dirname(_root)), '/tmp', '/'}:",
            "    try:",
            "        _hits += [os.path.join(_base, n) for n in os.listdir(_base) if _marker in n]",
            "    except OSError:",
            "        pass",
            "for _dir, _dirs, _files in os.walk(_root):",
            "    _hits += [os.path.join(_dir, n) for n in _dirs + _files if _marker in n or n == 'planted']",
          ].join("\n"),
          "_hits",
        );

        assert.deepEqual(hits, []);
        assert.deepEqual(listingAfter, listingBefore);
        assert.equal(await api.eval(probe, "6 * 7"), "42");
      });

      after(async () => {
        await api.stop(probe);
      });
    });

    describe("symlinks out of the working directory", () => {
      let outside: string;
      let passwdHead: string;

      before(async () => {
        [outside, passwdHead] = await inKernel<[string, string]>(
          kernel,
          [
            "import os, tempfile",
            "os.makedirs('links', exist_ok=True)",
            "_outside = tempfile.mkdtemp(prefix='pybox-outside-')",
            "open(os.path.join(_outside, 'victim.txt'), 'w').write('original')",
            "os.symlink('/etc/passwd', 'links/passwd')",
            "os.symlink('/etc', 'links/etc')",
            "os.symlink(os.path.join(_outside, 'victim.txt'), 'links/victim')",
            "os.symlink(_outside, 'links/outside')",
            "try:",
            "    _head = open('/etc/passwd').read(40)",
            "except OSError:",
            "    _head = 'root:'",
          ].join("\n"),
          "[_outside, _head]",
        );
      });

      after(async () => {
        await api.run(kernel, `import shutil\nshutil.rmtree(${JSON.stringify(outside)}, ignore_errors=True)`);
      });

      it("never serves the bytes of /etc/passwd through a link to it or to /etc", async () => {
        const direct = await api.getFile(kernel, "links/passwd");
        const ranged = await api.getFile(kernel, "links/passwd", { range: { start: 0, end: 99 } });
        const viaDir = await api.getFile(kernel, "links/etc/passwd");

        for (const [label, res] of [
          ["GET links/passwd", direct],
          ["ranged GET links/passwd", ranged],
          ["GET links/etc/passwd", viaDir],
        ] as const) {
          assertRefused(res, [400, 404], label);
          assert.ok(!res.text.includes(passwdHead.slice(0, 20)), `${label} leaked /etc/passwd`);
          assert.ok(!res.text.includes("root:x:0:0"), `${label} leaked /etc/passwd`);
        }
      });

      it("refuses writes and deletes through a link, and the target is untouched", async () => {
        const overLink = await api.putFile(kernel, "links/victim", "overwritten");
        const chunkOverLink = await api.putFile(kernel, "links/victim", "overwritten", {
          contentRange: { start: 0, end: 10, total: 11 },
        });
        const intoDir = await api.putFile(kernel, "links/outside/planted.txt", "planted");
        const chunkIntoDir = await api.putFile(kernel, "links/outside/chunk.bin", "planted", {
          contentRange: { start: 0, end: 6, total: 20 },
        });
        const removeThrough = await api.deleteFile(kernel, "links/outside/victim.txt");
        const state = await inKernel<{ victim: string; names: string[]; link: boolean }>(
          kernel,
          "",
          `{"victim": open(os.path.join(${JSON.stringify(outside)}, 'victim.txt')).read(), "names": sorted(os.listdir(${JSON.stringify(outside)})), "link": os.path.islink('links/victim')}`,
        );

        assertRefused(overLink, [400, 404], "PUT over a link");
        assertRefused(chunkOverLink, [400, 404], "chunked PUT over a link");
        assertRefused(intoDir, [400, 404], "PUT through a linked folder");
        assertRefused(chunkIntoDir, [400, 404], "chunked PUT through a linked folder");
        assertRefused(removeThrough, [400, 404], "DELETE through a linked folder");
        assert.deepEqual(state, { victim: "original", names: ["victim.txt"], link: true });
      });

      it("does not list what is behind a linked folder", async () => {
        const etc = await api.listFiles(kernel, { path: "links/etc/" });
        const out = await api.listFiles(kernel, { path: "links/outside", recursive: true });
        const all = await api.listFiles(kernel, { path: "links/", recursive: true });

        assertRefused(etc, [400, 404], "listing links/etc");
        assertRefused(out, [400, 404], "listing links/outside");
        const paths = okBody<FileListingBody>(all, 200, "listing links/").files.map((entry) => entry.path);
        assert.ok(
          paths.every((path) => !path.startsWith("links/etc/") && !path.startsWith("links/outside/")),
          paths.join(", "),
        );
      });
    });

    describe("owners and stopped kernels", () => {
      before(async () => {
        const res = await api.putFile(kernel, "owned/secret.txt", "alice only");
        assert.equal(res.status, 201, res.text);
      });

      it("serves files again once a kernel that died is started again", async () => {
        // Prepare
        const doomed = "files-doomed";
        assert.equal((await api.start({ kernelId: doomed })).status, 201);
        const died = await api.run(doomed, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", 15_000);
        assert.equal(died.status, 409, died.text);

        // Act
        const revived = await api.start({ kernelId: doomed });
        const put = await api.putFile(doomed, "after/revival.txt", "alive");
        const got = await api.getFile(doomed, "after/revival.txt");
        const listed = await api.listFiles(doomed, { path: "after/" });
        const seen = await api.eval(doomed, "open('after/revival.txt').read()");

        // Assess
        assert.equal(revived.status, 201, revived.text);
        assert.equal(revived.body.restarted, true);
        assert.ok(put.status === 201 || put.status === 200, put.text);
        assert.equal(got.bytes.toString(), "alive");
        assert.deepEqual(
          okBody<FileListingBody>(listed, 200, "listing").files.map((entry) => entry.path),
          ["after/revival.txt"],
        );
        assert.equal(seen, "'alive'");
        await api.stop(doomed);
      });

      if (traits.sharedDisk !== false) {
        it("leaves no temporary upload behind in a caller's cwd once the kernel stops", async () => {
          // Prepare
          const cwd = await mkdtemp(join(tmpdir(), "pybox-files-cwd-"));
          const id = "files-cwd";
          try {
            const started = await api.start({ kernelId: id, cwd });
            assert.equal(started.status, 201, started.text);
            const chunk = await api.putFile(id, "abandoned.bin", randomBytes(100), {
              contentRange: { start: 0, end: 99, total: 1_000 },
            });
            assert.equal(chunk.status, 202, chunk.text);
            const done = await api.putFile(id, "kept.txt", "kept");
            assert.equal(done.status, 201, done.text);

            // Act
            const stopped = await api.stop(id);

            // Assess
            assert.equal(stopped.status, 204);
            // Folders the kernel makes for itself (an IPython profile where HOME is the cwd) may stay.
            const left = (await readdir(cwd, { withFileTypes: true })).filter(
              (entry) => !entry.isDirectory(),
            );
            assert.deepEqual(
              left.map((entry) => entry.name),
              ["kept.txt"],
              "the abandoned upload's temporary file was removed",
            );
          } finally {
            await api.stop(id);
            await rm(cwd, { recursive: true, force: true });
          }
        });
      }

      it("answers another caller exactly as for a kernel that does not exist, and changes nothing", async () => {
        const mallory = harness.api.as("mallory");
        const operations: Array<[string, (client: ApiClient, id: string) => Promise<BinaryResponse>]> = [
          ["GET file", (client, id) => client.getFile(id, "owned/secret.txt")],
          [
            "ranged GET",
            (client, id) => client.getFile(id, "owned/secret.txt", { range: { start: 0, end: 3 } }),
          ],
          ["PUT file", (client, id) => client.putFile(id, "owned/secret.txt", "mallory was here")],
          [
            "chunked PUT",
            (client, id) =>
              client.putFile(id, "owned/chunked.txt", "mall", {
                contentRange: { start: 0, end: 3, total: 8 },
              }),
          ],
          ["DELETE file", (client, id) => client.deleteFile(id, "owned/secret.txt")],
          ["listing", (client, id) => client.listFiles(id, { path: "owned/", recursive: true })],
        ];

        for (const [label, operation] of operations) {
          const theirs = await operation(mallory, kernel);
          const missing = await operation(api, "ghost");

          assertRefused(theirs, 404, `${label} on another caller's kernel`);
          assert.deepEqual(errorShape(theirs, kernel), errorShape(missing, "ghost"), label);
        }
        const got = await api.getFile(kernel, "owned/secret.txt");
        const listed = await api.listFiles(kernel, { path: "owned/" });
        assert.equal(got.bytes.toString(), "alice only");
        assert.deepEqual(
          okBody<FileListingBody>(listed, 200, "listing").files.map((entry) => entry.path),
          ["owned/secret.txt"],
        );
      });

      it("answers 404 for every file route of a stopped kernel, as for one that does not exist", async () => {
        // Prepare
        const gone = "stopped-files";
        assert.equal((await api.start({ kernelId: gone })).status, 201);
        assert.equal((await api.putFile(gone, "kept.txt", "x")).status, 201);
        assert.equal((await api.stop(gone)).status, 204);

        // Act
        const answers = await Promise.all([
          api.getFile(gone, "kept.txt"),
          api.putFile(gone, "new.txt", "x"),
          api.deleteFile(gone, "kept.txt"),
          api.listFiles(gone),
        ]);
        const missing = await Promise.all([
          api.getFile("ghost", "kept.txt"),
          api.putFile("ghost", "new.txt", "x"),
          api.deleteFile("ghost", "kept.txt"),
          api.listFiles("ghost"),
        ]);

        // Assess
        answers.forEach((res, i) => {
          assert.equal(assertRefused(res, 404, `stopped kernel, operation ${i}`).error.code, "NOT_FOUND");
          assert.deepEqual(errorShape(res, gone), errorShape(missing[i] as BinaryResponse, "ghost"));
        });
      });
    });

    describe("while an async run holds the kernel", () => {
      /** Queues `code` and waits until the run has left the queue (it holds the kernel). */
      async function holdKernel(code: string): Promise<string> {
        const queued = await api.enqueue(kernel, { code });
        assert.equal(queued.status, 202, queued.text);
        const deadline = Date.now() + 30_000;
        while ((await api.runStatus(kernel, queued.body.runId)).body.status === "queued") {
          assert.ok(Date.now() < deadline, "the queued run started");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return queued.body.runId;
      }

      before(async () => {
        await api.run(kernel, "import os\nos.makedirs('async', exist_ok=True)");
      });

      it("a listing waits for a run shorter than the busy wait, and sees what it wrote", async () => {
        const runId = await holdKernel(
          "import time\ntime.sleep(1)\nopen('async/short.txt', 'w').write('done')",
        );

        const listed = await api.listFiles(kernel, { path: "async/" });
        const run = await api.waitForRun(kernel, runId);

        assert.equal(run.status, "ok", JSON.stringify(run));
        assert.deepEqual(
          okBody<FileListingBody>(listed, 200, "listing during a run").files.map((entry) => entry.path),
          ["async/short.txt"],
          "the listing came after the run",
        );
      });

      it("answers 409 KERNEL_BUSY with Retry-After past the busy wait, and writes nothing", async () => {
        const runId = await holdKernel(
          "import time\ntime.sleep(6)\nopen('async/long.txt', 'w').write('done')",
        );

        // Both at once: one after the other, the second would outlast the run.
        const [listed, put] = await Promise.all([
          api.listFiles(kernel, { path: "async/" }),
          api.putFile(kernel, "async/while-busy.txt", "x"),
        ]);
        const run = await api.waitForRun(kernel, runId);
        const afterwards = await api.listFiles(kernel, { path: "async/" });

        assert.equal(run.status, "ok", JSON.stringify(run));
        for (const [label, res] of [
          ["listing", listed],
          ["PUT", put],
        ] as const) {
          assert.equal(assertRefused(res, 409, `${label} while busy`).error.code, "KERNEL_BUSY");
          assert.ok(res.headers.get("retry-after"), `${label}: 409 says when to retry`);
        }
        assert.deepEqual(
          okBody<FileListingBody>(afterwards, 200, "listing afterwards").files.map((entry) => entry.path),
          ["async/long.txt", "async/short.txt"],
        );
      });
    });

    describe("the kernel afterwards", () => {
      it("still runs code, with its count of runs unchanged by file requests", async () => {
        const before = await api.run(kernel, "1");
        await api.putFile(kernel, "count/a.txt", "a");
        await api.getFile(kernel, "count/a.txt");
        await api.listFiles(kernel, { path: "count/" });
        await api.deleteFile(kernel, "count/a.txt");
        const next = await api.run(kernel, "_ + 1");

        assert.equal(next.body.executionCount, (before.body.executionCount ?? 0) + 1, next.text);
        assert.deepEqual(next.body.data, [{ "text/plain": "2" }], "`_` is still the user's last result");
      });
    });
  });
}
