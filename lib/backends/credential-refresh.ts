import { CredentialsRejectedError } from "../errors.ts";
import { aroundCalls } from "./around-calls.ts";
import type { Backend, KernelRef } from "./port.ts";

/**
 * The same backend, except that a call its peer refused for our credentials (a token or kubeconfig
 * rotated in Secrets Manager) makes the next call read them afresh, instead of failing until the
 * container is replaced. The refused call itself still fails (502).
 */
export function refreshingCredentials<R extends KernelRef>(
  backend: Backend<R>,
  reload: () => void,
): Backend<R> {
  return aroundCalls(backend, async (_name, call) => {
    try {
      return await call();
    } catch (error) {
      if (error instanceof CredentialsRejectedError) reload();
      throw error;
    }
  });
}
