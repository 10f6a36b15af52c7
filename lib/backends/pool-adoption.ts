import * as z from "zod";
import type { Backend, HelperRequest, KernelPooling, KernelRef, StartSpec } from "./port.ts";

/** Bound on the silent request that hands a pooled kernel to its caller. */
const ADOPTION_TIMEOUT_MS = 5_000;

/**
 * The silent request that makes a pooled kernel a caller's (see `KernelPooling` in `port.ts`):
 * `os.environ` takes the start's variables (`TZ` re-read, as a process start would). It runs in a
 * namespace of its own: the caller's stays empty.
 */
export function adoptionRequest(env: Record<string, string>): HelperRequest<null> {
  const encoded = Buffer.from(JSON.stringify(env)).toString("base64");
  const source = [
    "import base64, json, os, time",
    `env = json.loads(base64.b64decode("${encoded}").decode())`,
    "os.environ.update(env)",
    'if "TZ" in env: time.tzset()',
  ].join("\n");
  return {
    code: `exec(${JSON.stringify(source)}, {"__name__": "_pybox_adopt"})`,
    expression: "None",
    schema: z.null(),
    timeoutMs: ADOPTION_TIMEOUT_MS,
  };
}

/**
 * Pooling for a backend whose kernel's working folder is fixed when its process starts (a local
 * sandbox binds it in, a pod mounts it): a start asking for a `cwd` starts cold, and adopting is
 * the env request alone, with the variables that name the owner.
 */
export function envOnlyPooling<R extends KernelRef>(
  backend: Pick<Backend<R>, "helper">,
  key: string,
  why: string,
  options: {
    /** Variables that name the owner, as a cold start sets them. */
    ownerEnv?: (spec: StartSpec) => Record<string, string>;
    /** Run once the kernel is the caller's (the local backend renews its inventory entry). */
    adopted?: (ref: R) => Promise<void>;
  } = {},
): KernelPooling<R> {
  return {
    key,
    refusal: (spec) => (spec.cwd === undefined ? undefined : why),
    async adopt(ref, spec) {
      await backend.helper(ref, adoptionRequest({ ...spec.env, ...options.ownerEnv?.(spec) }));
      await options.adopted?.(ref);
      return ref;
    },
  };
}
