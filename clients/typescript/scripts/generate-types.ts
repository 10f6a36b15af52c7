import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER, type OpenAPI3, type SchemaObject } from "openapi-typescript";
import ts from "typescript";

/**
 * `src/openapi.d.ts` is derived from the service's `openapi.json` and nothing else, so the client
 * can never describe a request or an answer the service does not have. Run by
 * `npm run generate -w @pybox-serverless/client`; the unit tests call {@link generateTypes} to
 * prove the committed file is not stale.
 */

const HERE = fileURLToPath(new URL(".", import.meta.url));

/** The service's OpenAPI document (written by `npm run openapi` at the repository root). */
export const OPENAPI_JSON = join(HERE, "..", "..", "..", "openapi.json");

/** Where the generated types live, committed beside the client. */
export const TYPES_FILE = join(HERE, "..", "src", "openapi.d.ts");

/** File bodies travel as raw bytes, so they are typed as bytes rather than openapi-typescript's `string`. */
function isBinary(schema: SchemaObject): boolean {
  return (
    schema.type === "string" &&
    "contentMediaType" in schema &&
    schema.contentMediaType === "application/octet-stream"
  );
}

/** The text of `src/openapi.d.ts` for the document at `source` (the service's by default). */
export async function generateTypes(source: string = OPENAPI_JSON): Promise<string> {
  const document = JSON.parse(await readFile(source, "utf8")) as OpenAPI3;
  const ast = await openapiTS(document, {
    transform: (schema) =>
      isBinary(schema)
        ? ts.factory.createTypeReferenceNode(ts.factory.createIdentifier("Uint8Array"))
        : undefined,
  });
  return COMMENT_HEADER + astToString(ast);
}

/** Regenerates the committed types in place. */
export async function writeTypes(target: string = TYPES_FILE): Promise<void> {
  await writeFile(target, await generateTypes());
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await writeTypes();
  console.log(`wrote ${TYPES_FILE}`);
}
