import { loadConfig } from "../lib/config.ts";
import { createRuntime } from "../lib/runtime.ts";
import { reaperHandler } from "../lib/sandbox/reaper.ts";

/** Scheduled: stops idle kernels and cleans up what crashes left behind. */
export const handler = reaperHandler(await createRuntime(loadConfig()));
