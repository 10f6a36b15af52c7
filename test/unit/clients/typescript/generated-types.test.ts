import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { generateTypes, TYPES_FILE } from "../../../../clients/typescript/scripts/generate-types.ts";

describe("the client's generated types", () => {
  it("are what openapi.json gives today", async () => {
    const committed = await readFile(TYPES_FILE, "utf8");

    const fresh = await generateTypes();

    assert.ok(
      fresh === committed,
      "clients/typescript/src/openapi.d.ts is stale: run `npm run generate -w @pybox-serverless/client`",
    );
  });

  it("type file bodies as bytes", async () => {
    const committed = await readFile(TYPES_FILE, "utf8");

    assert.match(committed, /"application\/octet-stream": Uint8Array;/);
    assert.doesNotMatch(committed, /"application\/octet-stream": string;/);
  });
});
