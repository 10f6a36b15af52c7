import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { afterEach, describe, it } from "node:test";
import {
  encodeFilePath,
  FILE_CHUNK_BYTES,
  PyboxClient,
  PyboxError,
  SYNC_RUN_LIMIT_MS,
} from "../../../../clients/typescript/src/index.ts";
import { SYNC_RUN_LIMIT_MS as SERVICE_SYNC_RUN_LIMIT_MS } from "../../../../lib/config.ts";
import { FILE_CHUNK_BYTES as SERVICE_FILE_CHUNK_BYTES } from "../../../../lib/core/files.ts";
import { type HttpDouble, type Received, type Reply, serve } from "./http-double.ts";

const MiB = 1024 * 1024;

let server: HttpDouble | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** The service's side of uploads: 202 with progress until the declared total is in, then 201. */
function uploadServer(stored: Buffer[], path = "big.bin", digest?: string) {
  return (request: Received): Reply => {
    stored.push(request.body);
    const range = request.headers["content-range"];
    const total = range ? Number(String(range).split("/")[1]) : request.body.length;
    const received = stored.reduce((sum, part) => sum + part.length, 0);
    if (received < total) return { status: 202, json: { path, received } };
    const whole = Buffer.concat(stored);
    return {
      status: 201,
      json: { path, size: whole.length, mtime: new Date().toISOString(), sha256: digest ?? sha256(whole) },
    };
  };
}

/** The service's side of ranged reads of `file`: 206 parts of at most 4 MiB with the file's ETag. */
function fileServer(file: () => Buffer) {
  return (request: Received): Reply => {
    const bytes = file();
    const etag = `"${sha256(bytes)}"`;
    const match = /^bytes=(\d+)-(\d*)$/.exec(String(request.headers.range ?? ""));
    if (!match || (bytes.length === 0 && match[1] === "0"))
      return { status: 200, headers: { etag }, raw: bytes };
    const first = Number(match[1]);
    const last = Math.min(
      bytes.length - 1,
      first + FILE_CHUNK_BYTES - 1,
      match[2] ? Number(match[2]) : Infinity,
    );
    return {
      status: 206,
      headers: {
        etag,
        "content-range": `bytes ${first}-${last}/${bytes.length}`,
        "content-type": "application/octet-stream",
      },
      raw: bytes.subarray(first, last + 1),
    };
  };
}

describe("files", () => {
  it("uploads 9 MiB as three PUTs of at most 4 MiB with Content-Range, in order", async () => {
    const data = randomBytes(9 * MiB);
    const stored: Buffer[] = [];
    server = await serve(uploadServer(stored));
    const client = new PyboxClient({ baseUrl: server.url, token: "alice" });

    const info = await client.upload("k1", "big.bin", data);

    assert.deepEqual(
      server.requests.map((request) => [request.method, request.url, request.headers["content-range"]]),
      [
        ["PUT", "/kernels/k1/files/big.bin", "bytes 0-4194303/9437184"],
        ["PUT", "/kernels/k1/files/big.bin", "bytes 4194304-8388607/9437184"],
        ["PUT", "/kernels/k1/files/big.bin", "bytes 8388608-9437183/9437184"],
      ],
    );
    for (const request of server.requests) {
      assert.equal(request.headers["content-type"], "application/octet-stream");
      assert.ok(request.body.length <= FILE_CHUNK_BYTES);
    }
    assert.ok(Buffer.concat(stored).equals(data), "the chunks add up to the file");
    assert.equal(info.size, data.length);
    assert.equal(info.sha256, sha256(data));
  });

  it("uploads a small file (a string, as UTF-8) in one PUT without Content-Range", async () => {
    const stored: Buffer[] = [];
    server = await serve(uploadServer(stored, "notes.txt"));
    const client = new PyboxClient({ baseUrl: server.url });

    const info = await client.upload("k1", "notes.txt", "héllo\n");

    assert.equal(server.requests.length, 1);
    assert.equal(server.requests[0]?.headers["content-range"], undefined);
    assert.equal(server.requests[0]?.body.toString("utf8"), "héllo\n");
    assert.equal(info.size, Buffer.byteLength("héllo\n"));
  });

  it("uploads exactly 4 MiB in one PUT and an empty file as an empty PUT", async () => {
    const stored: Buffer[] = [];
    server = await serve(uploadServer(stored));
    const client = new PyboxClient({ baseUrl: server.url });

    await client.upload("k1", "four.bin", new Uint8Array(FILE_CHUNK_BYTES));
    stored.length = 0;
    const empty = await client.upload("k1", "empty.bin", new Uint8Array(0));

    assert.equal(server.requests.length, 2);
    assert.equal(server.requests[1]?.body.length, 0);
    assert.equal(empty.size, 0);
  });

  it("encodes a file path per segment, so folders stay folders and odd names stay names", async () => {
    const stored: Buffer[] = [];
    server = await serve(uploadServer(stored));
    const client = new PyboxClient({ baseUrl: server.url });

    await client.upload("k1", "my data/a b#?%é.csv", "x");

    assert.equal(server.requests[0]?.url, "/kernels/k1/files/my%20data/a%20b%23%3F%25%C3%A9.csv");
    assert.equal(encodeFilePath("a/b c/d"), "a/b%20c/d");
  });

  it("refuses an upload the service stored with another SHA-256", async () => {
    server = await serve(uploadServer([], "x.bin", "0".repeat(64)));
    const client = new PyboxClient({ baseUrl: server.url });

    await assert.rejects(client.upload("k1", "x.bin", "abc"), (error: unknown) => {
      assert.ok(error instanceof PyboxError);
      assert.equal(error.code, "CHECKSUM_MISMATCH");
      return true;
    });
  });

  it("downloads 9 MiB in ranges by the total Content-Range gives, byte-exact", async () => {
    const data = randomBytes(9 * MiB + 123);
    server = await serve(fileServer(() => data));
    const client = new PyboxClient({ baseUrl: server.url });

    const bytes = await client.download("k1", "dir/big file.bin");

    assert.ok(Buffer.from(bytes).equals(data));
    assert.deepEqual(
      server.requests.map((request) => [request.url, request.headers.range]),
      [
        ["/kernels/k1/files/dir/big%20file.bin", "bytes=0-4194303"],
        ["/kernels/k1/files/dir/big%20file.bin", "bytes=4194304-8388607"],
        ["/kernels/k1/files/dir/big%20file.bin", "bytes=8388608-12582911"],
      ],
    );
  });

  it("downloads a small file in one request and an empty one as empty", async () => {
    let file = Buffer.from("a,b\n1,2\n");
    server = await serve(fileServer(() => file));
    const client = new PyboxClient({ baseUrl: server.url });

    assert.equal(Buffer.from(await client.download("k1", "t.csv")).toString(), "a,b\n1,2\n");
    assert.equal(server.requests.length, 1);
    file = Buffer.alloc(0);
    assert.equal((await client.download("k1", "empty")).byteLength, 0);
  });

  it("says FILE_CHANGED when the ETag changes between parts", async () => {
    let reads = 0;
    const first = randomBytes(5 * MiB);
    const second = randomBytes(5 * MiB);
    const serveFile = fileServer(() => (reads++ === 0 ? first : second));
    server = await serve(serveFile);
    const client = new PyboxClient({ baseUrl: server.url });

    await assert.rejects(client.download("k1", "moving.bin"), (error: unknown) => {
      assert.ok(error instanceof PyboxError);
      assert.equal(error.code, "FILE_CHANGED");
      return true;
    });
  });

  it("says CHECKSUM_MISMATCH when the bytes do not hash to the ETag", async () => {
    server = await serve(() => ({
      status: 206,
      headers: { etag: `"${"a".repeat(64)}"`, "content-range": "bytes 0-2/3" },
      raw: "abc",
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    await assert.rejects(client.download("k1", "x"), { code: "CHECKSUM_MISMATCH" });
  });

  it("lists with recursive and path as the service takes them, and removes by encoded path", async () => {
    server = await serve((request) =>
      request.method === "GET"
        ? {
            status: 200,
            json: {
              files: [{ path: "d/a.txt", size: 1, mtime: new Date().toISOString(), kind: "file" }],
              truncated: false,
            },
          }
        : { status: 204 },
    );
    const client = new PyboxClient({ baseUrl: server.url });

    const listing = await client.list("k1", { path: "d", recursive: true });
    await client.list("k1");
    await client.remove("k1", "d/a b.txt");

    assert.equal(listing.files[0]?.kind, "file");
    assert.deepEqual(
      server.requests.map((request) => `${request.method} ${request.url}`),
      [
        "GET /kernels/k1/files?recursive=true&path=d",
        "GET /kernels/k1/files?recursive=false",
        "DELETE /kernels/k1/files/d/a%20b.txt",
      ],
    );
  });

  it("shares the service's limits: 4 MiB per file request, 20 s per synchronous run", () => {
    assert.equal(FILE_CHUNK_BYTES, SERVICE_FILE_CHUNK_BYTES);
    assert.equal(SYNC_RUN_LIMIT_MS, SERVICE_SYNC_RUN_LIMIT_MS);
  });
});
