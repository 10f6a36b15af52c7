/**
 * Run as its own process (`node --import tsx start-one-kernel.ts <owner> <kernelId>`): one start of
 * one kernel through the sandbox service, configured by this process's environment exactly as a
 * Lambda container is (`PYBOX_*`, `AWS_*`), printing the outcome as JSON. For tests that kill it at
 * a chosen point of the start, as a crashed or timed-out invocation would end.
 */
import { loadConfig } from "../../lib/config.ts";
import { createRuntime } from "../../lib/runtime.ts";

const [owner, kernelId] = process.argv.slice(2);
if (!owner || !kernelId) throw new Error("usage: start-one-kernel.ts <owner> <kernelId>");
const { sandbox } = await createRuntime(loadConfig(process.env));
const outcome = await sandbox.start(owner, { kernelId });
process.stdout.write(`${JSON.stringify(outcome)}\n`);
