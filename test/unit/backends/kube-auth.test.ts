import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { describe, it } from "node:test";
import { eksToken, kubeClientsLoader } from "../../../lib/backends/cluster/kube-auth.ts";

const credentials = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const signingDate = new Date("2026-01-02T03:04:05Z");

function decode(token: string): URL {
  return new URL(Buffer.from(token.slice("k8s-aws-v1.".length), "base64url").toString("utf8"));
}

/** SigV4 query-string presigning computed from the spec, independently of the code under test. */
function expectedSignature(url: URL, cluster: string, region: string): string {
  const params = [...url.searchParams.entries()].filter(([key]) => key !== "X-Amz-Signature");
  const canonicalQuery = params
    .map(([key, value]) => [encodeURIComponent(key), encodeURIComponent(value)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join("&");
  const canonicalRequest = [
    "GET",
    "/",
    canonicalQuery,
    `host:${url.hostname}\nx-k8s-aws-id:${cluster}\n`,
    "host;x-k8s-aws-id",
    // Outside S3, a presigned request signs the hash of its (empty) payload.
    createHash("sha256").update("").digest("hex"),
  ].join("\n");
  const amzDate = url.searchParams.get("X-Amz-Date") ?? "";
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/sts/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();
  let key = hmac(`AWS4${credentials.secretAccessKey}`, day);
  key = hmac(key, region);
  key = hmac(key, "sts");
  key = hmac(key, "aws4_request");
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

describe("kube-auth", () => {
  describe("eksToken", () => {
    it("presigns STS GetCallerIdentity for the cluster, as aws eks get-token does", async () => {
      // Act
      const token = await eksToken({ cluster: "analytics", region: "eu-west-1", credentials, signingDate });

      // Assess
      assert.match(token, /^k8s-aws-v1\.[A-Za-z0-9_-]+$/, "base64url without padding");
      const url = decode(token);
      assert.equal(url.origin, "https://sts.eu-west-1.amazonaws.com");
      assert.equal(url.pathname, "/");
      assert.equal(url.searchParams.get("Action"), "GetCallerIdentity");
      assert.equal(url.searchParams.get("Version"), "2011-06-15");
      assert.equal(url.searchParams.get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
      assert.equal(
        url.searchParams.get("X-Amz-Credential"),
        "AKIDEXAMPLE/20260102/eu-west-1/sts/aws4_request",
      );
      assert.equal(url.searchParams.get("X-Amz-Date"), "20260102T030405Z");
      assert.equal(url.searchParams.get("X-Amz-Expires"), "60");
      assert.equal(url.searchParams.get("X-Amz-SignedHeaders"), "host;x-k8s-aws-id");
    });

    it("signs with SigV4 so that STS would accept it (checked against the spec's algorithm)", async () => {
      // Act
      const url = decode(
        await eksToken({ cluster: "analytics", region: "eu-west-1", credentials, signingDate }),
      );

      // Assess
      assert.equal(url.searchParams.get("X-Amz-Signature"), expectedSignature(url, "analytics", "eu-west-1"));
    });

    it("binds the token to its cluster: another cluster name gives another signature", async () => {
      // Act
      const a = decode(await eksToken({ cluster: "one", region: "us-east-1", credentials, signingDate }));
      const b = decode(await eksToken({ cluster: "two", region: "us-east-1", credentials, signingDate }));

      // Assess
      assert.notEqual(a.searchParams.get("X-Amz-Signature"), b.searchParams.get("X-Amz-Signature"));
      assert.equal(b.searchParams.get("X-Amz-Signature"), expectedSignature(b, "two", "us-east-1"));
    });

    it("carries a session token when the credentials have one", async () => {
      // Act
      const url = decode(
        await eksToken({
          cluster: "c",
          region: "us-east-1",
          credentials: { ...credentials, sessionToken: "session-xyz" },
          signingDate,
        }),
      );

      // Assess
      assert.equal(url.searchParams.get("X-Amz-Security-Token"), "session-xyz");
    });
  });

  describe("kubeClientsLoader", () => {
    const eks = {
      kind: "eks" as const,
      cluster: "analytics",
      endpoint: "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
      caData: Buffer.from("not a real CA").toString("base64"),
      region: "eu-west-1",
    };

    it("makes the clients once and reuses them while the EKS token is fresh", async () => {
      // Prepare
      let resolved = 0;
      let now = signingDate.getTime();
      const load = kubeClientsLoader(eks, {
        credentials: async () => {
          resolved++;
          return credentials;
        },
        now: () => new Date(now),
      });

      // Act
      const first = await load();
      now += 9 * 60_000;
      const second = await load();

      // Assess
      assert.equal(first, second);
      assert.equal(resolved, 1);
    });

    it("makes a new token before the old one expires (EKS accepts them for 15 minutes)", async () => {
      // Prepare
      let resolved = 0;
      let now = signingDate.getTime();
      const load = kubeClientsLoader(eks, {
        credentials: async () => {
          resolved++;
          return credentials;
        },
        now: () => new Date(now),
      });
      const first = await load();

      // Act
      now += 11 * 60_000;
      const second = await load();

      // Assess
      assert.notEqual(first, second);
      assert.equal(resolved, 2);
    });

    it("fails clearly on a kubeconfig file that cannot be read, and tries again next time", async () => {
      // Prepare
      const load = kubeClientsLoader({ kind: "kubeconfig-file", path: "/nonexistent/kubeconfig" });

      // Act & assess
      await assert.rejects(load(), { name: "ConfigError", message: /PYBOX_KUBECONFIG cannot be read/ });
      await assert.rejects(load(), { name: "ConfigError" });
    });
  });
});
