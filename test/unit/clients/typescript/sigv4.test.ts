import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { afterEach, describe, it } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import { PyboxClient, PyboxError, signingRegion } from "../../../../clients/typescript/src/index.ts";
import { type HttpDouble, type Received, serve } from "./http-double.ts";

const CREDENTIALS = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
  sessionToken: "session-token-example",
};

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/(\d{8})\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/;

let server: HttpDouble | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** `20250102T030405Z` as a Date. */
function amzDate(text: string): Date {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  assert.ok(match, `x-amz-date ${text}`);
  const [, y, mo, d, h, mi, s] = match.map(Number);
  return new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s));
}

/**
 * Signs the request as the server received it, with the headers the client said it signed: the
 * same Authorization comes out only if method, path, query, those headers and the body all arrived
 * as they were signed.
 */
async function resign(received: Received, port: number): Promise<string> {
  const authorization = String(received.headers.authorization);
  const signedHeaders = AUTHORIZATION.exec(authorization)?.[2]?.split(";") ?? [];
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) headers[name] = String(received.headers[name]);
  const url = new URL(received.url, `http://127.0.0.1:${port}`);
  const query: Record<string, string> = {};
  url.searchParams.forEach((value, name) => {
    query[name] = value;
  });
  const signer = new SignatureV4({
    service: "execute-api",
    region: "eu-west-1",
    credentials: CREDENTIALS,
    sha256: Sha256,
  });
  const signed = await signer.sign(
    {
      method: received.method,
      protocol: "http:",
      hostname: "127.0.0.1",
      port,
      path: url.pathname,
      query,
      headers,
      body: received.body.length > 0 ? received.body : undefined,
    },
    { signingDate: amzDate(String(received.headers["x-amz-date"])) },
  );
  return String(signed.headers.authorization);
}

describe("SigV4", () => {
  it("signs an upload for execute-api: method, encoded path, host, headers and the exact body bytes", async () => {
    const sha256 = createHash("sha256").update("a,b\n1,2\n").digest("hex");
    server = await serve(() => ({
      status: 201,
      json: { path: "dir/a b.csv", size: 8, mtime: new Date().toISOString(), sha256 },
    }));
    const client = new PyboxClient({
      baseUrl: server.url,
      auth: "sigv4",
      region: "eu-west-1",
      credentials: CREDENTIALS,
    });

    await client.upload("k1", "dir/a b.csv", "a,b\n1,2\n");

    const [received] = server.requests;
    assert.ok(received);
    const authorization = String(received.headers.authorization);
    assert.match(authorization, AUTHORIZATION);
    const signedHeaders = AUTHORIZATION.exec(authorization)?.[2]?.split(";") ?? [];
    for (const name of [
      "host",
      "x-amz-date",
      "x-amz-content-sha256",
      "x-amz-security-token",
      "content-type",
    ]) {
      assert.ok(signedHeaders.includes(name), `${name} is signed (${signedHeaders.join(";")})`);
    }
    assert.match(String(received.headers["x-amz-date"]), /^\d{8}T\d{6}Z$/);
    assert.equal(received.headers["x-amz-security-token"], CREDENTIALS.sessionToken);
    assert.equal(
      received.headers["x-amz-content-sha256"],
      sha256,
      "the body hash is of the bytes that arrived",
    );
    assert.equal(received.url, "/kernels/k1/files/dir/a%20b.csv");
    assert.equal(await resign(received, server.port), authorization);
  });

  it("signs a query string and a request without a body", async () => {
    server = await serve(() => ({ status: 200, json: { files: [], truncated: false } }));
    const client = new PyboxClient({
      baseUrl: server.url,
      auth: "sigv4",
      region: "eu-west-1",
      credentials: async () => CREDENTIALS,
    });

    await client.list("k1", { path: "my data/2024", recursive: true });

    const [received] = server.requests;
    assert.ok(received);
    assert.match(received.url, /\?recursive=true&path=my%20data%2F2024$/);
    assert.equal(received.headers["x-amz-content-sha256"], createHash("sha256").update("").digest("hex"));
    assert.equal(await resign(received, server.port), String(received.headers.authorization));
  });

  it("signs every attempt of a retried request afresh", async () => {
    server = await serve((_, index) =>
      index === 0
        ? {
            status: 503,
            headers: { "retry-after": "0" },
            json: { error: { code: "CAPACITY", message: "full" } },
          }
        : { status: 200, json: { files: [], truncated: false } },
    );
    const client = new PyboxClient({
      baseUrl: server.url,
      auth: "sigv4",
      region: "eu-west-1",
      credentials: CREDENTIALS,
    });

    await client.list("k1");

    assert.equal(server.requests.length, 2);
    for (const received of server.requests) {
      assert.equal(await resign(received, server.port), String(received.headers.authorization));
    }
  });

  it("uses the default credential chain (here: the environment) when none are given", async () => {
    server = await serve(() => ({ status: 204 }));
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = "AKIDFROMENV";
    process.env.AWS_SECRET_ACCESS_KEY = "secret-from-env";
    try {
      const client = new PyboxClient({ baseUrl: server.url, auth: "sigv4", region: "eu-west-1" });
      await client.stop("k1");
    } finally {
      for (const [name, value] of [
        ["AWS_ACCESS_KEY_ID", saved.id],
        ["AWS_SECRET_ACCESS_KEY", saved.secret],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
    assert.match(String(server.requests[0]?.headers.authorization), /Credential=AKIDFROMENV\//);
  });

  it("fails with UNAUTHENTICATED, sending nothing, when no credentials can be had", async () => {
    server = await serve(() => ({ status: 200, json: {} }));
    const client = new PyboxClient({
      baseUrl: server.url,
      auth: "sigv4",
      region: "eu-west-1",
      credentials: async () => {
        throw new Error("no credentials in this test");
      },
    });

    await assert.rejects(client.get("k1"), (error: unknown) => {
      assert.ok(error instanceof PyboxError);
      assert.equal(error.code, "UNAUTHENTICATED");
      return true;
    });
    assert.equal(server.requests.length, 0);
  });

  it("takes the region from an execute-api URL, else the option, else AWS_REGION", () => {
    assert.equal(signingRegion("https://abc123.execute-api.eu-west-1.amazonaws.com/prod"), "eu-west-1");
    assert.equal(signingRegion("https://abc123xyz.lambda-url.eu-north-1.on.aws/"), "eu-north-1");
    assert.equal(signingRegion("https://pybox.example.com", "ap-south-1"), "ap-south-1");
    const saved = { region: process.env.AWS_REGION, fallback: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_DEFAULT_REGION;
    try {
      process.env.AWS_REGION = "us-west-2";
      assert.equal(signingRegion("https://pybox.example.com"), "us-west-2");
      delete process.env.AWS_REGION;
      assert.throws(() => signingRegion("https://pybox.example.com"), /needs a region/);
    } finally {
      if (saved.region === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = saved.region;
      if (saved.fallback !== undefined) process.env.AWS_DEFAULT_REGION = saved.fallback;
    }
  });
});
