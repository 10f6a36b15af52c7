import type { Config } from "../../config.ts";
import type { Backend } from "../port.ts";
import { LocalBackend } from "./local.ts";

/**
 * The local backend as configured, built the way the other two are, so `lib/runtime.ts` knows
 * each backend by one `…BackendFrom(config)` and nothing of its options.
 */
export function localBackendFrom(config: Config): Backend {
  return new LocalBackend({
    ...config.local,
    startTimeoutMs: config.startTimeoutMs,
    keepConnectionsMs: config.keepConnectionsMs,
  });
}
