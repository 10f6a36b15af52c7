import { execFileSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PROJECT_ROOT } from "../config.ts";
import { renderOpenApi } from "./openapi.ts";

/**
 * `npm run openapi`: writes the API's OpenAPI document to `openapi.json` at the repository root,
 * formatted as Biome wants it so `npm run lint` stays quiet. The file is committed for readers and
 * client generators; `test/unit/http/openapi.test.ts` fails when it no longer matches the schemas.
 */
const file = join(PROJECT_ROOT, "openapi.json");
await writeFile(file, renderOpenApi());
execFileSync(join(PROJECT_ROOT, "node_modules", ".bin", "biome"), ["format", "--write", file], {
  stdio: "inherit",
});
console.log(`Wrote ${file}`);
