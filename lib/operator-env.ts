import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import * as z from "zod";
import { ConfigError } from "./errors.ts";

const EnvMapSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

/**
 * pybox's merge: the dotenv file first, then the JSON object over it. Values are strings in the
 * kernel's environment, so numbers and booleans in the JSON are stringified.
 */
export function loadOperatorEnv(file: string | undefined, json: string | undefined): Record<string, string> {
  const merged: Record<string, string> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (cause) {
      throw new ConfigError(`PYBOX_KERNEL_ENV_FILE cannot be read: ${file}`, { cause });
    }
    Object.assign(merged, parseEnv(text));
  }
  if (json) {
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch (cause) {
      throw new ConfigError("PYBOX_KERNEL_ENV is not valid JSON", { cause });
    }
    const parsed = EnvMapSchema.safeParse(value);
    if (!parsed.success) throw new ConfigError("PYBOX_KERNEL_ENV must be a JSON object of strings");
    for (const [key, v] of Object.entries(parsed.data)) merged[key] = String(v);
  }
  return merged;
}
