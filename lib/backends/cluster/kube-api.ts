import { within } from "../../async.ts";
import {
  BackendError,
  BackendUnavailableError,
  CapacityError,
  CredentialsRejectedError,
  KernelDiedError,
  PyboxError,
} from "../../errors.ts";
import { KERNEL_RESOURCE, type KernelObject, KernelObjectSchema } from "./kernel-resource.ts";

/*
 * Calling the Kubernetes API about `Kernel` resources: every call bounded, every answer checked,
 * every failure in the project's terms, in one place.
 */

/** Bound on one Kubernetes API request. */
const KUBE_REQUEST_TIMEOUT_MS = 10_000;

/** One Kubernetes API call, bounded: client-node sets no timeout of its own. */
export function bounded<T>(call: Promise<T>, doing: string, ms = KUBE_REQUEST_TIMEOUT_MS): Promise<T> {
  return within(
    call,
    ms,
    () => new BackendUnavailableError(`the Kubernetes API did not answer in time to ${doing}`),
  );
}

/** The path parameters of `Kernel` resources in `namespace`. */
export function resource(namespace: string) {
  return {
    group: KERNEL_RESOURCE.group,
    version: KERNEL_RESOURCE.version,
    plural: KERNEL_RESOURCE.plural,
    namespace,
  };
}

/** A `Kernel` as the API returned it, checked; malformed is a backend error. */
export function parseKernel(value: unknown): KernelObject {
  const parsed = KernelObjectSchema.safeParse(value);
  if (!parsed.success) throw new BackendError("the Kubernetes API answered with a malformed Kernel");
  return parsed.data;
}

/**
 * The HTTP status of an API answer the Kubernetes client raised as its `ApiException` (a numeric
 * `code` with the answer's `body` and `headers`); undefined for anything else, a network error
 * among them. Read by shape, so the client is loaded only once a call is made.
 */
export function apiStatus(error: unknown): number | undefined {
  if (!(error instanceof Error) || !("body" in error) || !("headers" in error) || !("code" in error))
    return undefined;
  return typeof error.code === "number" ? error.code : undefined;
}

/**
 * The Kubernetes API's answers in the project's terms, in one place: a quota refusal (403) keeps
 * the API server's message, which names the quota; other failures say only what failed.
 */
export function translateKubeError(error: unknown, doing: string): PyboxError {
  if (error instanceof PyboxError) return error;
  const code = apiStatus(error);
  if (code !== undefined) {
    if (code === 403) {
      // Only a quota refusal is about capacity, and its message names the quota; an RBAC denial
      // names our role and is a misconfiguration the caller cannot fix.
      const message = statusMessage((error as { body?: unknown }).body);
      if (message && /exceeded quota/i.test(message))
        return new CapacityError(message, { retryAfterSeconds: 10 });
      return new BackendError(`the Kubernetes API refused to ${doing} (HTTP 403)`, { cause: error });
    }
    if (code === 401)
      return new CredentialsRejectedError("the Kubernetes API rejected our credentials", { cause: error });
    if (code === 404) return new KernelDiedError("the kernel resource is gone", { cause: error });
    if (code >= 500 || code === 429) {
      return new BackendUnavailableError(`the Kubernetes API could not ${doing} (HTTP ${code})`, {
        cause: error,
      });
    }
    return new BackendError(`the Kubernetes API failed to ${doing} (HTTP ${code})`, { cause: error });
  }
  return new BackendUnavailableError(`the Kubernetes API could not be reached to ${doing}`, {
    cause: error,
    retryAfterSeconds: 5,
  });
}

/** The `message` of a Kubernetes `Status` body, however the client handed it over. */
function statusMessage(body: unknown): string | undefined {
  let value: unknown = body;
  if (typeof body === "string") {
    try {
      value = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const message = (value as { message?: unknown } | null)?.message;
  return typeof message === "string" && message.length > 0 ? message.slice(0, 500) : undefined;
}
