import { loadConfig } from "../lib/config.ts";
import { runtimeConsumer } from "../lib/queue/consumer.ts";
import { createRuntime } from "../lib/runtime.ts";

/** The run queue's consumer (SQS event source with partial batch responses). */
export const handler = runtimeConsumer(await createRuntime(loadConfig()));
