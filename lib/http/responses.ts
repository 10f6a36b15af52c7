import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";

/** Every response is JSON and never cached: kernel state changes under the caller's feet. */
const HEADERS = { "content-type": "application/json", "cache-control": "no-store" };

/** A JSON response; `undefined` body gives an empty one (204). */
export function json(
  statusCode: number,
  body?: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode,
    headers: { ...HEADERS, ...headers },
    body: body === undefined ? "" : JSON.stringify(body),
  };
}

/**
 * Bytes (a file or a part of it), base64 in the Lambda response as API Gateway wants binary bodies;
 * never cached, for the same reason as JSON.
 */
export function binary(
  statusCode: number,
  bytes: Buffer,
  headers: Record<string, string>,
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode,
    headers: { "cache-control": "no-store", "content-length": String(bytes.length), ...headers },
    body: bytes.toString("base64"),
    isBase64Encoded: true,
  };
}
