import type { Backend, KernelRef } from "./port.ts";

/** What wraps each call: its method's name, and the call itself. */
export type AroundCall = <T>(name: string, call: () => Promise<T>) => Promise<T>;

/**
 * The same backend with every call that reaches its peer (start, run, helper, interrupt, isAlive,
 * stop, sharedHost, a pooled kernel's adopt) passed through `around`: the one way credential
 * refresh and tracing wrap a backend, so neither can miss a method the other covers.
 */
export function aroundCalls<R extends KernelRef>(backend: Backend<R>, around: AroundCall): Backend<R> {
  const { pooling, sharedHost, inventory } = backend;
  return {
    name: backend.name,
    parseRef: (value) => backend.parseRef(value),
    start: (spec) => around("start", () => backend.start(spec)),
    run: (ref, code, options) => around("run", () => backend.run(ref, code, options)),
    helper: (ref, request) => around("helper", () => backend.helper(ref, request)),
    interrupt: (ref) => around("interrupt", () => backend.interrupt(ref)),
    isAlive: (ref) => around("isAlive", () => backend.isAlive(ref)),
    stop: (ref) => around("stop", () => backend.stop(ref)),
    closeKept: () => backend.closeKept?.(),
    ...(sharedHost ? { sharedHost: () => around("sharedHost", () => sharedHost.call(backend)) } : {}),
    ...(inventory ? { inventory } : {}),
    ...(pooling
      ? {
          pooling: {
            key: pooling.key,
            refusal: (spec) => pooling.refusal(spec),
            adopt: (ref, spec) => around("adopt", () => pooling.adopt(ref, spec)),
          },
        }
      : {}),
  };
}
