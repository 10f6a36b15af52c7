import { Sha256 } from "@aws-crypto/sha256-js";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { SignatureV4, type SignatureV4Init } from "@smithy/signature-v4";
import type { Middleware } from "openapi-fetch";
import { PyboxError } from "./errors.ts";

/** AWS credentials, or a provider of them (what `@aws-sdk/credential-providers` returns). */
export type AwsCredentials = SignatureV4Init["credentials"];

/** A bearer token, or a function giving the current one (for JWTs that expire and are refreshed). */
export type TokenSource = string | (() => string | Promise<string>);

/** `Authorization: Bearer <token>`: the dev server (the token names the caller) and JWT authorizers. */
export function bearerAuth(token: TokenSource): Middleware {
  return {
    async onRequest({ request }) {
      const value = typeof token === "string" ? token : await token();
      request.headers.set("authorization", `Bearer ${value}`);
      return request;
    },
  };
}

/** An API Gateway hostname names its region: `abc123.execute-api.eu-west-1.amazonaws.com`. */
const EXECUTE_API_HOST = /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/;

/**
 * The signing region: the one given, else the one an execute-api URL names, else the
 * environment's (as the AWS SDKs read it); an error when none says, since a wrong guess would only
 * show as a 403 later.
 */
export function signingRegion(baseUrl: string, region?: string): string {
  const host = new URL(baseUrl).hostname;
  const fromHost = EXECUTE_API_HOST.exec(host)?.[1] ?? FUNCTION_URL_HOST.exec(host)?.[1];
  const found = region ?? fromHost ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!found) {
    throw new Error("auth: 'sigv4' needs a region: the region option, an execute-api URL or AWS_REGION");
  }
  return found;
}

/** A Lambda Function URL's host (the stack's `StreamUrl`), whose requests are signed for `lambda`. */
export const FUNCTION_URL_HOST = /^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$/;

/**
 * Signs every request for `execute-api` (the IAM-authorized deployment), or `lambda` for the
 * streaming Function URL. The signature covers the
 * method, the URL as sent (path and query), every header fetch is given (host included) and the
 * SHA-256 of the exact body bytes, sent as `x-amz-content-sha256`. Each attempt of a retried
 * request is signed afresh, so its `x-amz-date` stays current.
 */
export function sigv4Auth(options: {
  region: string;
  credentials?: AwsCredentials;
  /** `execute-api` (the HTTP API, the default) or `lambda` (the streaming Function URL). */
  service?: "execute-api" | "lambda";
}): Middleware {
  const signer = new SignatureV4({
    service: options.service ?? "execute-api",
    region: options.region,
    credentials: options.credentials ?? fromNodeProviderChain(),
    sha256: Sha256,
    // Canonical paths are URI-encoded twice for every service but S3, as botocore does too.
    uriEscapePath: true,
    applyChecksum: true,
  });
  return {
    async onRequest({ request }) {
      const url = new URL(request.url);
      const body = request.body === null ? undefined : new Uint8Array(await request.arrayBuffer());
      const headers: Record<string, string> = {};
      request.headers.forEach((value, name) => {
        headers[name] = value;
      });
      headers.host = url.host;
      const query: Record<string, string | string[]> = {};
      for (const name of new Set(url.searchParams.keys())) {
        const values = url.searchParams.getAll(name);
        query[name] = values.length === 1 ? (values[0] ?? "") : values;
      }
      const signed = await signer
        .sign({
          method: request.method,
          protocol: url.protocol,
          hostname: url.hostname,
          ...(url.port ? { port: Number(url.port) } : {}),
          path: url.pathname,
          query,
          headers,
          body,
        })
        .catch((error: unknown) => {
          throw new PyboxError(0, "UNAUTHENTICATED", "no usable AWS credentials for SigV4 signing", {
            cause: error,
          });
        });
      // fetch sets Host itself, from the same URL; it refuses to be told.
      const { host: _host, ...sent } = signed.headers;
      return new Request(request.url, {
        method: request.method,
        headers: sent,
        body: body ?? null,
        signal: request.signal,
        redirect: request.redirect,
      });
    },
  };
}
