/**
 * The environment a backend receives: the caller's variables under the operator's, so an
 * operator setting can never be overridden from a request.
 */
export function mergeKernelEnv(operator: Record<string, string>, caller: Record<string, string> = {}) {
  return { ...caller, ...operator };
}
