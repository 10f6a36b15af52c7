import { aroundCalls } from "./backends/around-calls.ts";
import type { Backend, KernelRef } from "./backends/port.ts";

/**
 * The same backend with each call in an X-Ray subsegment (`backend.start`, `backend.run`, …), for a
 * deployment that turns tracing on (`PYBOX_TRACING`, the stack's `tracing` context). Powertools
 * Tracer is loaded on the first call; outside Lambda, or with no active segment, calls go straight
 * through. Bundles of a deployment without tracing carry none of it (see `lib/runtime.ts`).
 */
export function tracedBackend<R extends KernelRef>(backend: Backend<R>): Backend<R> {
  return aroundCalls(backend, (name, call) => inSubsegment(`backend.${name}`, call));
}

let tracer: Promise<import("@aws-lambda-powertools/tracer").Tracer> | undefined;

/** Runs `call` in a subsegment of the invocation's segment, recording what it threw. */
async function inSubsegment<T>(name: string, call: () => Promise<T>): Promise<T> {
  tracer ??= import("@aws-lambda-powertools/tracer").then(
    ({ Tracer }) => new Tracer({ serviceName: "pybox" }),
  );
  const active = await tracer;
  const parent = active.isTracingEnabled() ? active.getSegment() : undefined;
  if (!parent) return call();
  const subsegment = parent.addNewSubsegment(name);
  active.setSegment(subsegment);
  try {
    return await call();
  } catch (error) {
    subsegment.addError(error as Error);
    throw error;
  } finally {
    subsegment.close();
    active.setSegment(parent);
  }
}
