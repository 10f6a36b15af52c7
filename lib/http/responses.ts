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
