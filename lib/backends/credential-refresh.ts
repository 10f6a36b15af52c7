import { CredentialsRejectedError } from "../errors.ts";
import type { Backend, KernelPooling, KernelRef } from "./port.ts";

/**
 * The same backend, except that a call its peer refused for our credentials (a token or kubeconfig
 * rotated in Secrets Manager) makes the next call read them afresh, instead of failing until the
 * container is replaced. The refused call itself still fails (502).
 */
export function refreshingCredentials<R extends KernelRef>(
  backend: Backend<R>,
  reload: () => void,
): Backend<R> {
  const guard = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await call();
    } catch (error) {
      if (error instanceof CredentialsRejectedError) reload();
      throw error;
    }
  };
  return {
    name: backend.name,
    parseRef: (value) => backend.parseRef(value),
    start: (spec) => guard(() => backend.start(spec)),
    run: (ref, code, options) => guard(() => backend.run(ref, code, options)),
    helper: (ref, request) => guard(() => backend.helper(ref, request)),
    interrupt: (ref) => guard(() => backend.interrupt(ref)),
    isAlive: (ref) => guard(() => backend.isAlive(ref)),
    stop: (ref) => guard(() => backend.stop(ref)),
    closeKept: () => backend.closeKept?.(),
    ...(backend.sharedHost
      ? { sharedHost: () => guard(() => backend.sharedHost?.() ?? Promise.resolve(undefined)) }
      : {}),
    ...(backend.pooling ? { pooling: guardedPooling(backend.pooling, guard) } : {}),
  };
}

function guardedPooling<R extends KernelRef>(
  pooling: KernelPooling<R>,
  guard: <T>(call: () => Promise<T>) => Promise<T>,
): KernelPooling<R> {
  return {
    key: pooling.key,
    refusal: (spec) => pooling.refusal(spec),
    adopt: (ref, spec) => guard(() => pooling.adopt(ref, spec)),
  };
}
