import { getConfig } from "../lib/config.ts";
import { getRuntime } from "../lib/runtime.ts";
import type { ReapReport } from "../lib/sandbox/service.ts";

const { sandbox } = await getRuntime();
const idleMs = getConfig().idleTimeoutSeconds * 1_000;

/** Scheduled: stops idle kernels and cleans up what crashes left behind (see `SandboxService.reap`). */
export const handler = async (_event: unknown, _context: unknown): Promise<ReapReport> =>
  sandbox.reap(idleMs);
