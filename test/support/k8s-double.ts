/**
 * Kubernetes API double: a loopback HTTP server that speaks the real Kubernetes REST API for the
 * one custom resource the `cluster` backend uses, jupyter-kernel-controller's `Kernel`
 * (`jupyter.org/v1`, plural `kernels`, namespaced, with a status subresource). No cluster exists on
 * the machines that run our tests, so the backend is tested against this through the real
 * `@kubernetes/client-node` client. It is a test double, never a product component.
 *
 * What it keeps faithfully, because a backend can get each of them wrong:
 * - `Status` error bodies with the reason and code the apiserver uses (NotFound, AlreadyExists,
 *   Invalid, Forbidden quota, Conflict, Expired, UnsupportedMediaType, MethodNotAllowed ...).
 * - one global, increasing `resourceVersion` (a string); no-op writes do not bump it.
 * - name and label validation (a DNS-1123 subdomain name, label values of at most 63 characters).
 * - the status subresource: a write to `/status` changes only `.status`; a write to the main
 *   resource ignores `.status`; `status` is dropped on create.
 * - PATCH content types: merge patch and JSON patch; anything else is 415.
 * - watches: newline-delimited JSON events over a chunked response, replay from a resourceVersion,
 *   `ERROR` 410 Expired once that version is compacted away, selector transitions (an object that
 *   stops matching a watch's selector is DELETED for that watch), bookmarks, `timeoutSeconds`.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isDeepStrictEqual } from "node:util";

/** The custom resource the double serves. */
export const KERNEL_RESOURCE = {
  group: "jupyter.org",
  version: "v1",
  plural: "kernels",
  kind: "Kernel",
} as const;

const API_VERSION = `${KERNEL_RESOURCE.group}/${KERNEL_RESOURCE.version}`;
const QUALIFIED = `${KERNEL_RESOURCE.plural}.${KERNEL_RESOURCE.group}`;
const BASE = `/apis/${KERNEL_RESOURCE.group}/${KERNEL_RESOURCE.version}`;
const MERGE_PATCH = "application/merge-patch+json";
const JSON_PATCH = "application/json-patch+json";
/** Kubernetes' limit on the total size of an object's annotations. */
const ANNOTATIONS_MAX_BYTES = 256 * 1024;

/** Object metadata as the double's apiserver keeps and returns it. */
export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  generation: number;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** A stored `Kernel` object, exactly as the API returns it. */
export interface KernelObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [field: string]: unknown;
}

/** The watch event types the store produces. */
export type KernelEventType = "ADDED" | "MODIFIED" | "DELETED";

/** In-process change feed (for the controller double): each event carries a copy of the object. */
export type KernelEvents = {
  ADDED: [KernelObject];
  MODIFIED: [KernelObject];
  DELETED: [KernelObject];
};

/** A Kubernetes `Status` object, the body of every error the double answers. */
export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  details?: Record<string, unknown>;
  code: number;
}

/** One request the double received, for assertions on what a client sent. */
export interface RecordedRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  /** The query string, with its leading `?` (or empty). */
  search: string;
  contentType: string | undefined;
  /** The status answered (0 until the response head is sent). */
  status: number;
}

/**
 * An apiserver error as a value, thrown by the in-process store methods and turned into a
 * `Status` body on the wire.
 */
export class KubeStatusError extends Error {
  override readonly name = "KubeStatusError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  /** The `Status` body the apiserver would send. */
  toStatus(): KubeStatus {
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

/** Options of the in-process store writes. */
export interface StoreWriteOptions {
  /** `"status"` writes through the status subresource (only `.status` changes). */
  subresource?: "status";
}

/**
 * The double's storage seen in process, bypassing HTTP (no auth, no injected faults, not logged):
 * for assertions, for seeding, and for the controller double, which acts with its own credentials.
 * Everything returned is a copy.
 */
export interface KernelStoreView {
  get(namespace: string, name: string): KernelObject | undefined;
  /** Objects in one namespace (or all), in the apiserver's order (namespace, then name). */
  list(namespace?: string): KernelObject[];
  /** The current global resourceVersion. */
  resourceVersion(): string;
  /** Creates as a POST would (validation, quota, AlreadyExists); throws `KubeStatusError`. */
  create(namespace: string, object: Record<string, unknown>): KernelObject;
  /** Applies an RFC 7386 merge patch as a PATCH would; undefined when the object is gone. */
  mergePatch(
    namespace: string,
    name: string,
    patch: Record<string, unknown>,
    options?: StoreWriteOptions,
  ): KernelObject | undefined;
  /** Deletes as a DELETE would (e.g. to play the controller culling an idle kernel); undefined when absent. */
  delete(namespace: string, name: string): KernelObject | undefined;
}

/** A running Kubernetes API double. */
export interface KubernetesDouble {
  /** Base URL, e.g. `http://127.0.0.1:43123`, for a kubeconfig's `server`. */
  url: string;
  /** The bearer token it requires, if any. */
  token: string | undefined;
  store: KernelStoreView;
  /** ADDED / MODIFIED / DELETED with the object, emitted synchronously after each change. */
  events: EventEmitter<KernelEvents>;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[];
  /**
   * The next `count` requests (any endpoint, watches included, or only those `when` selects)
   * answer `status` with a Status body of the fitting reason (429/503/504 also with Retry-After).
   */
  failNext(count: number, status: number, options?: FaultOptions): void;
  /** Creates beyond `max` kernels in a namespace answer 403 exceeded quota; undefined lifts it. */
  setQuota(max: number | undefined): void;
  /** Ends every open watch abruptly (the connection is destroyed, no terminating chunk). */
  dropWatches(): void;
  /** Forgets all watch history: a watch from any older resourceVersion then gets 410 Expired. */
  compactHistory(): void;
  /** Sends a BOOKMARK with the current resourceVersion to watches that allowed bookmarks. */
  sendBookmarks(): void;
  /** How many watch streams are open now. */
  openWatches(): number;
  /** Stops the server, ending open watches and connections. */
  close(): Promise<void>;
}

/** What `failNext` applies to and says. */
export interface FaultOptions {
  /** The Status message (default: the apiserver's usual one for that code). */
  message?: string;
  /** Only requests this selects fail (and count); e.g. `(r) => r.watch` fails watches only. */
  when?: (request: { method: string; path: string; search: string; watch: boolean }) => boolean;
}

/** Options of the double. */
export interface KubernetesDoubleOptions {
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  token?: string;
  /** How many change events are kept for watch replay (default 1000). */
  historyLimit?: number;
}

interface HistoryEntry {
  revision: number;
  type: KernelEventType;
  object: KernelObject;
  /** The object before a MODIFIED, to judge selector transitions. */
  previous?: KernelObject;
}

interface Watcher {
  namespace: string | undefined;
  labels: LabelRequirement[];
  fields: FieldRequirement[];
  bookmarks: boolean;
  res: ServerResponse;
  timer?: NodeJS.Timeout;
}

/**
 * Starts a Kubernetes API double on a free loopback port. Always closed by the test that started it.
 */
export async function startKubernetesDouble(
  options: KubernetesDoubleOptions = {},
): Promise<KubernetesDouble> {
  const historyLimit = options.historyLimit ?? 1000;
  const objects = new Map<string, KernelObject>();
  const events = new EventEmitter<KernelEvents>();
  const requests: RecordedRequest[] = [];
  const watchers = new Set<Watcher>();
  let history: HistoryEntry[] = [];
  let revision = 1000;
  /** Watches from a revision below this one cannot be served any more. */
  let compactedRevision = revision;
  let quota: number | undefined;
  let faults: { count: number; status: number; options: FaultOptions } | undefined;

  const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

  function record(type: KernelEventType, object: KernelObject, previous?: KernelObject): void {
    const entry: HistoryEntry = { revision, type, object: clone(object) };
    if (previous) entry.previous = clone(previous);
    history.push(entry);
    if (history.length > historyLimit) {
      const dropped = history.splice(0, history.length - historyLimit);
      const last = dropped.at(-1);
      if (last) compactedRevision = last.revision;
    }
    for (const watcher of watchers) deliver(watcher, entry);
    try {
      events.emit(type, clone(object));
    } catch (error) {
      console.error("k8s double: an in-process event listener threw", error);
    }
  }

  function create(namespace: string, body: unknown): KernelObject {
    if (!isRecord(body)) throw badRequest("the body of the request is not a JSON object");
    checkTypeMeta(body);
    const metadata = isRecord(body.metadata) ? body.metadata : {};
    let name = typeof metadata.name === "string" ? metadata.name : "";
    if (!name && typeof metadata.generateName === "string" && metadata.generateName) {
      name = `${metadata.generateName}${randomSuffix()}`;
    }
    if (!name) {
      throw invalid("", [
        {
          reason: "FieldValueRequired",
          message: "Required value: name or generateName is required",
          field: "metadata.name",
        },
      ]);
    }
    if (typeof metadata.namespace === "string" && metadata.namespace && metadata.namespace !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    const {
      uid: _uid,
      resourceVersion: _rv,
      generation: _generation,
      creationTimestamp: _created,
      deletionTimestamp: _deleted,
      managedFields: _managed,
      ...userMeta
    } = metadata;
    const object: KernelObject = {
      ...body,
      apiVersion: API_VERSION,
      kind: KERNEL_RESOURCE.kind,
      metadata: {
        ...userMeta,
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: "",
        generation: 1,
        creationTimestamp: timestamp(),
      },
    };
    // The status subresource is enabled: status is not settable on create.
    delete object.status;
    // The apiserver's order: decoding (400), validation (422), admission with quota (403), storage (409).
    validate(object);
    if (quota !== undefined) {
      const used = [...objects.values()].filter((o) => o.metadata.namespace === namespace).length;
      if (used + 1 > quota) {
        const counted = `count/${QUALIFIED}`;
        throw new KubeStatusError(
          403,
          "Forbidden",
          `${QUALIFIED} "${name}" is forbidden: exceeded quota: kernels, requested: ${counted}=1, used: ${counted}=${used}, limited: ${counted}=${quota}`,
          detailsFor(name),
        );
      }
    }
    if (objects.has(keyOf(namespace, name))) {
      throw new KubeStatusError(
        409,
        "AlreadyExists",
        `${QUALIFIED} "${name}" already exists`,
        detailsFor(name),
      );
    }
    revision += 1;
    object.metadata.resourceVersion = String(revision);
    objects.set(keyOf(namespace, name), object);
    record("ADDED", object);
    return clone(object);
  }

  function getOrThrow(namespace: string, name: string): KernelObject {
    const object = objects.get(keyOf(namespace, name));
    if (!object) throw notFound(name);
    return object;
  }

  /**
   * The one update path (PUT, PATCH, main or status): `mutate` turns a copy of the current object
   * into the requested one; the subresource rules, preconditions and validation follow.
   */
  function update(
    namespace: string,
    name: string,
    mutate: (current: KernelObject) => unknown,
    how: { subresource?: "status"; requireResourceVersion?: boolean },
  ): KernelObject {
    const current = getOrThrow(namespace, name);
    const requested = mutate(clone(current));
    if (!isRecord(requested)) throw badRequest("the object is not a JSON object");
    checkTypeMeta(requested);
    const meta = isRecord(requested.metadata) ? requested.metadata : {};
    if (meta.name !== name) {
      throw badRequest(
        `the name of the object (${String(meta.name)}) does not match the name on the URL (${name})`,
      );
    }
    if (meta.namespace !== undefined && meta.namespace !== "" && meta.namespace !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    if (meta.uid !== undefined && meta.uid !== "" && meta.uid !== current.metadata.uid) {
      throw invalid(name, [
        {
          reason: "FieldValueInvalid",
          message: `Invalid value: "${String(meta.uid)}": field is immutable`,
          field: "metadata.uid",
        },
      ]);
    }
    const wanted = meta.resourceVersion;
    if (wanted === undefined || wanted === "") {
      if (how.requireResourceVersion) {
        throw invalid(name, [
          {
            reason: "FieldValueInvalid",
            message: "Invalid value: 0x0: must be specified for an update",
            field: "metadata.resourceVersion",
          },
        ]);
      }
    } else if (wanted !== current.metadata.resourceVersion) {
      throw conflict(name);
    }

    let next: KernelObject;
    if (how.subresource === "status") {
      next = clone(current);
      if (isRecord(requested.status)) next.status = clone(requested.status);
      else delete next.status;
    } else {
      next = {
        ...clone(requested),
        apiVersion: API_VERSION,
        kind: KERNEL_RESOURCE.kind,
        metadata: {
          ...clone(meta),
          name,
          namespace,
          uid: current.metadata.uid,
          resourceVersion: current.metadata.resourceVersion,
          generation: current.metadata.generation,
          creationTimestamp: current.metadata.creationTimestamp,
        },
      };
      if (current.status) next.status = clone(current.status);
      else delete next.status;
      validate(next);
    }
    if (isDeepStrictEqual(next, current)) return clone(current);
    if (!isDeepStrictEqual(next.spec, current.spec))
      next.metadata.generation = current.metadata.generation + 1;
    revision += 1;
    next.metadata.resourceVersion = String(revision);
    objects.set(keyOf(namespace, name), next);
    record("MODIFIED", next, current);
    return clone(next);
  }

  function remove(namespace: string, name: string, preconditions?: unknown): KernelObject {
    const current = getOrThrow(namespace, name);
    if (isRecord(preconditions)) {
      if (typeof preconditions.uid === "string" && preconditions.uid !== current.metadata.uid) {
        throw new KubeStatusError(
          409,
          "Conflict",
          `Operation cannot be fulfilled on ${QUALIFIED} "${name}": Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${current.metadata.uid}`,
          detailsFor(name),
        );
      }
      if (
        typeof preconditions.resourceVersion === "string" &&
        preconditions.resourceVersion !== current.metadata.resourceVersion
      ) {
        throw new KubeStatusError(
          409,
          "Conflict",
          `Operation cannot be fulfilled on ${QUALIFIED} "${name}": Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`,
          detailsFor(name),
        );
      }
    }
    objects.delete(keyOf(namespace, name));
    revision += 1;
    const gone = clone(current);
    gone.metadata.resourceVersion = String(revision);
    record("DELETED", gone, current);
    return clone(current);
  }

  function listObjects(namespace: string | undefined): KernelObject[] {
    return [...objects.values()]
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .sort((a, b) => compareKeys(a, b));
  }

  // ---- watches ----

  function write(watcher: Watcher, type: string, object: unknown): void {
    if (watcher.res.writableEnded || watcher.res.destroyed) return;
    watcher.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  function deliver(watcher: Watcher, entry: HistoryEntry): void {
    const object = entry.object;
    if (watcher.namespace !== undefined && object.metadata.namespace !== watcher.namespace) return;
    const matches = (o: KernelObject) => matchesLabels(o, watcher.labels) && matchesFields(o, watcher.fields);
    const now = matches(object);
    if (entry.type === "ADDED") {
      if (now) write(watcher, "ADDED", object);
    } else if (entry.type === "DELETED") {
      if (now) write(watcher, "DELETED", object);
    } else {
      const before = entry.previous ? matches(entry.previous) : false;
      if (before && now) write(watcher, "MODIFIED", object);
      else if (!before && now) write(watcher, "ADDED", object);
      else if (before && !now && entry.previous) {
        // The watch cache reports the object leaving the selection as its old self at the new version.
        const left = clone(entry.previous);
        left.metadata.resourceVersion = object.metadata.resourceVersion;
        write(watcher, "DELETED", left);
      }
    }
  }

  function bookmark(watcher: Watcher, annotations?: Record<string, string>): void {
    const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
    if (annotations) metadata.annotations = annotations;
    write(watcher, "BOOKMARK", { kind: KERNEL_RESOURCE.kind, apiVersion: API_VERSION, metadata });
  }

  function endWatch(watcher: Watcher, abrupt: boolean): void {
    watchers.delete(watcher);
    if (watcher.timer) clearTimeout(watcher.timer);
    if (abrupt) watcher.res.socket?.destroy();
    else if (!watcher.res.writableEnded) watcher.res.end();
  }

  function startWatch(namespace: string | undefined, url: URL, res: ServerResponse): void {
    const query = url.searchParams;
    const labels = parseLabelSelector(query.get("labelSelector") ?? "");
    const fields = parseFieldSelector(query.get("fieldSelector") ?? "");
    const bookmarks = query.get("allowWatchBookmarks") === "true";
    const sendInitialEvents = query.get("sendInitialEvents") === "true";
    const timeoutText = query.get("timeoutSeconds");
    const timeoutSeconds = timeoutText === null ? undefined : Number(timeoutText);
    if (timeoutSeconds !== undefined && !(Number.isInteger(timeoutSeconds) && timeoutSeconds >= 0)) {
      throw badRequest(`invalid timeoutSeconds: "${timeoutText}"`);
    }
    if (sendInitialEvents && !bookmarks) {
      throw invalid("", [
        {
          reason: "FieldValueForbidden",
          message: "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
          field: "allowWatchBookmarks",
        },
      ]);
    }
    const rvText = query.get("resourceVersion") ?? "";
    let from: number | undefined;
    if (rvText !== "" && rvText !== "0" && !sendInitialEvents) {
      from = Number(rvText);
      if (!Number.isSafeInteger(from) || from < 0) {
        throw badRequest(`invalid resource version: "${rvText}"`);
      }
      if (from > revision) {
        throw new KubeStatusError(
          504,
          "Timeout",
          `Timeout: Too large resource version: ${from}, current: ${revision}`,
          {
            causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }],
            retryAfterSeconds: 1,
          },
        );
      }
    }

    res.writeHead(200, {
      "Content-Type": "application/json",
      "Cache-Control": "no-cache, private",
      "Transfer-Encoding": "chunked",
    });
    res.flushHeaders();
    const watcher: Watcher = { namespace, labels, fields, bookmarks, res };

    if (from !== undefined && from < compactedRevision) {
      const expired = new KubeStatusError(
        410,
        "Expired",
        `too old resource version: ${from} (${compactedRevision})`,
      );
      write(watcher, "ERROR", expired.toStatus());
      res.end();
      return;
    }
    watchers.add(watcher);
    res.on("close", () => endWatch(watcher, false));
    if (from === undefined) {
      for (const object of listObjects(namespace)) {
        if (matchesLabels(object, labels) && matchesFields(object, fields)) write(watcher, "ADDED", object);
      }
      if (sendInitialEvents) bookmark(watcher, { "k8s.io/initial-events-end": "true" });
    } else {
      for (const entry of history) if (entry.revision > from) deliver(watcher, entry);
    }
    if (timeoutSeconds !== undefined) {
      watcher.timer = setTimeout(() => {
        if (watcher.bookmarks) bookmark(watcher);
        endWatch(watcher, false);
      }, timeoutSeconds * 1000);
    }
  }

  // ---- HTTP ----

  function list(namespace: string | undefined, url: URL, res: ServerResponse): void {
    const query = url.searchParams;
    const labels = parseLabelSelector(query.get("labelSelector") ?? "");
    const fields = parseFieldSelector(query.get("fieldSelector") ?? "");
    let items = listObjects(namespace).filter((o) => matchesLabels(o, labels) && matchesFields(o, fields));
    const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
    const cont = query.get("continue");
    if (cont) {
      let after: string;
      try {
        after = String(JSON.parse(Buffer.from(cont, "base64url").toString("utf8")).start);
      } catch {
        throw badRequest("continue key is not valid: illegal base64 data");
      }
      items = items.filter((o) => keyOf(o.metadata.namespace, o.metadata.name) > after);
    }
    const limit = Number(query.get("limit") ?? "0");
    if (Number.isInteger(limit) && limit > 0 && items.length > limit) {
      const remaining = items.length - limit;
      items = items.slice(0, limit);
      const last = items.at(-1);
      if (last) {
        metadata.continue = Buffer.from(
          JSON.stringify({
            v: "meta.k8s.io/v1",
            rv: revision,
            start: keyOf(last.metadata.namespace, last.metadata.name),
          }),
        ).toString("base64url");
        metadata.remainingItemCount = remaining;
      }
    }
    send(res, 200, { apiVersion: API_VERSION, kind: `${KERNEL_RESOURCE.kind}List`, metadata, items });
  }

  async function route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    if (path === BASE) {
      if (method !== "GET") throw methodNotAllowed();
      send(res, 200, discovery());
      return;
    }
    if (!path.startsWith(`${BASE}/`)) throw pathNotFound();
    const parts = path
      .slice(BASE.length + 1)
      .split("/")
      .map((part) => decodeURIComponent(part));
    const isWatch = ["true", "1"].includes(url.searchParams.get("watch") ?? "");

    // Cluster-wide collection: list and watch across namespaces.
    if (parts.length === 1 && parts[0] === KERNEL_RESOURCE.plural) {
      if (method !== "GET") throw methodNotAllowed();
      if (isWatch) startWatch(undefined, url, res);
      else list(undefined, url, res);
      return;
    }
    const [namespacesWord, namespace, plural, name, subresource, ...rest] = parts;
    if (
      namespacesWord !== "namespaces" ||
      !namespace ||
      plural !== KERNEL_RESOURCE.plural ||
      rest.length > 0
    ) {
      throw pathNotFound();
    }
    if (name === undefined) {
      if (method === "GET") {
        if (isWatch) startWatch(namespace, url, res);
        else list(namespace, url, res);
      } else if (method === "POST") {
        const body = await readJsonBody(req, ["application/json"]);
        send(res, 201, create(namespace, body));
      } else if (method === "DELETE") {
        const labels = parseLabelSelector(url.searchParams.get("labelSelector") ?? "");
        const fields = parseFieldSelector(url.searchParams.get("fieldSelector") ?? "");
        const items = listObjects(namespace)
          .filter((o) => matchesLabels(o, labels) && matchesFields(o, fields))
          .map((o) => remove(namespace, o.metadata.name));
        send(res, 200, {
          apiVersion: API_VERSION,
          kind: `${KERNEL_RESOURCE.kind}List`,
          metadata: { resourceVersion: String(revision) },
          items,
        });
      } else {
        throw methodNotAllowed();
      }
      return;
    }
    if (!name) throw pathNotFound();
    if (subresource !== undefined && subresource !== "status") throw pathNotFound();
    const status = subresource === "status" ? ("status" as const) : undefined;
    switch (method) {
      case "GET":
        send(res, 200, clone(getOrThrow(namespace, name)));
        return;
      case "PUT": {
        const body = await readJsonBody(req, ["application/json"]);
        send(
          res,
          200,
          update(namespace, name, () => body, { subresource: status, requireResourceVersion: true }),
        );
        return;
      }
      case "PATCH": {
        const type = mediaType(req);
        if (type !== MERGE_PATCH && type !== JSON_PATCH) {
          await drain(req);
          throw unsupportedMediaType([JSON_PATCH, MERGE_PATCH, "application/apply-patch+yaml"]);
        }
        const patch = await readJsonBody(req, [type]);
        getOrThrow(namespace, name);
        if (type === MERGE_PATCH) {
          if (!isRecord(patch)) throw badRequest("error decoding patch: the patch is not a JSON object");
          send(
            res,
            200,
            update(namespace, name, (current) => mergePatch(current, patch), { subresource: status }),
          );
        } else {
          if (!Array.isArray(patch)) {
            throw badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
          }
          send(
            res,
            200,
            update(namespace, name, (current) => applyJsonPatch(current, patch), { subresource: status }),
          );
        }
        return;
      }
      case "DELETE": {
        if (status) throw methodNotAllowed();
        const body = await readJsonBody(req, ["application/json"], true);
        const preconditions = isRecord(body) ? body.preconditions : undefined;
        send(res, 200, remove(namespace, name, preconditions));
        return;
      }
      default:
        throw methodNotAllowed();
    }
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://double.invalid");
    const entry: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      search: url.search,
      contentType: req.headers["content-type"],
      status: 0,
    };
    requests.push(entry);
    const stamp = () => {
      if (res.headersSent) entry.status = res.statusCode;
    };
    res.on("finish", stamp);
    res.on("close", stamp);
    const fail = (error: unknown) => {
      const status =
        error instanceof KubeStatusError
          ? error
          : new KubeStatusError(500, "InternalError", `Internal error occurred: ${String(error)}`);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      send(res, status.code, status.toStatus(), status.headers);
    };
    const watch = ["true", "1"].includes(url.searchParams.get("watch") ?? "");
    if (faults && faults.count > 0 && (faults.options.when?.({ ...entry, watch }) ?? true)) {
      faults.count -= 1;
      req.resume();
      fail(injected(faults.status, faults.options.message));
      return;
    }
    if (options.token !== undefined) {
      const header = req.headers.authorization ?? "";
      const match = /^Bearer\s+(.+)$/i.exec(header);
      if (match?.[1] !== options.token) {
        req.resume();
        fail(new KubeStatusError(401, "Unauthorized", "Unauthorized"));
        return;
      }
    }
    route(req, res, url).catch(fail);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    token: options.token,
    events,
    requests,
    store: {
      get: (namespace, name) => {
        const object = objects.get(keyOf(namespace, name));
        return object ? clone(object) : undefined;
      },
      list: (namespace) => listObjects(namespace).map(clone),
      resourceVersion: () => String(revision),
      create: (namespace, object) => create(namespace, object),
      mergePatch(namespace, name, patch, writeOptions = {}) {
        if (!objects.has(keyOf(namespace, name))) return undefined;
        return update(namespace, name, (current) => mergePatch(current, patch), {
          subresource: writeOptions.subresource,
        });
      },
      delete(namespace, name) {
        if (!objects.has(keyOf(namespace, name))) return undefined;
        return remove(namespace, name);
      },
    },
    failNext(count, status, faultOptions = {}) {
      faults = { count, status, options: faultOptions };
    },
    setQuota(max) {
      quota = max;
    },
    dropWatches() {
      for (const watcher of [...watchers]) endWatch(watcher, true);
    },
    compactHistory() {
      history = [];
      compactedRevision = revision;
    },
    sendBookmarks() {
      for (const watcher of watchers) if (watcher.bookmarks) bookmark(watcher);
    },
    openWatches: () => watchers.size,
    async close() {
      for (const watcher of [...watchers]) endWatch(watcher, true);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      events.removeAllListeners();
    },
  };
}

// ---- validation ----

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

interface Cause {
  reason: string;
  message: string;
  field: string;
}

function checkTypeMeta(body: Record<string, unknown>): void {
  if (body.kind === undefined || body.kind === "") {
    throw badRequest(`Object 'Kind' is missing in '${truncate(JSON.stringify(body))}'`);
  }
  if (body.apiVersion === undefined || body.apiVersion === "") {
    throw badRequest(`Object 'apiVersion' is missing in '${truncate(JSON.stringify(body))}'`);
  }
  if (body.kind !== KERNEL_RESOURCE.kind || body.apiVersion !== API_VERSION) {
    throw badRequest(
      `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${API_VERSION}) or kind (${String(body.kind)}) is not ${KERNEL_RESOURCE.kind}`,
    );
  }
}

/** ObjectMeta validation as the apiserver does it for every object (the parts a backend can trip on). */
function validate(object: KernelObject): void {
  const meta = object.metadata;
  const causes: Cause[] = [];
  if (meta.name.length > 253 || !DNS_SUBDOMAIN.test(meta.name)) {
    causes.push({
      reason: "FieldValueInvalid",
      message: `Invalid value: "${meta.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
      field: "metadata.name",
    });
  }
  for (const field of ["labels", "annotations"] as const) {
    const map: unknown = meta[field];
    if (map === undefined || map === null) {
      delete meta[field];
      continue;
    }
    if (!isRecord(map)) throw badRequest(`metadata.${field} must be a map of strings`);
    for (const [key, value] of Object.entries(map)) {
      if (typeof value !== "string") {
        throw badRequest(
          `json: cannot unmarshal ${typeof value} into Go struct field ObjectMeta.metadata.${field} of type string`,
        );
      }
      if (!validQualifiedKey(key)) {
        causes.push({
          reason: "FieldValueInvalid",
          message: `Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
          field: `metadata.${field}`,
        });
      }
      if (field === "labels" && value !== "" && (value.length > 63 || !QUALIFIED_NAME.test(value))) {
        causes.push({
          reason: "FieldValueInvalid",
          message:
            value.length > 63
              ? `Invalid value: "${value}": must be no more than 63 characters`
              : `Invalid value: "${value}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
          field: `metadata.labels`,
        });
      }
    }
    if (field === "annotations") {
      const size = Object.entries(map).reduce((n, [k, v]) => n + k.length + String(v).length, 0);
      if (size > ANNOTATIONS_MAX_BYTES) {
        causes.push({
          reason: "FieldValueTooLong",
          message: `Too long: must have at most ${ANNOTATIONS_MAX_BYTES} bytes`,
          field: "metadata.annotations",
        });
      }
    }
  }
  if (causes.length > 0) throw invalid(meta.name, causes);
}

function validQualifiedKey(key: string): boolean {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && QUALIFIED_NAME.test(name);
}

// ---- selectors ----

interface LabelRequirement {
  key: string;
  op: "=" | "!=" | "in" | "notin" | "exists" | "!exists";
  values: string[];
}

interface FieldRequirement {
  field: "metadata.name" | "metadata.namespace";
  op: "=" | "!=";
  value: string;
}

/** Equality (`k=v`, `k==v`, `k!=v`), set (`k in (a,b)`, `k notin (a,b)`) and existence (`k`, `!k`). */
function parseLabelSelector(text: string): LabelRequirement[] {
  const requirements: LabelRequirement[] = [];
  for (const raw of splitTopLevel(text)) {
    const part = raw.trim();
    if (!part) continue;
    let match = /^!\s*([^\s!=(),]+)$/.exec(part);
    if (match?.[1]) {
      requirements.push({ key: match[1], op: "!exists", values: [] });
      continue;
    }
    match = /^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(part);
    if (match?.[1] && match[2] && match[3] !== undefined) {
      const values = match[3].split(",").map((v) => v.trim());
      requirements.push({ key: match[1], op: match[2] === "in" ? "in" : "notin", values });
      continue;
    }
    match = /^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/.exec(part);
    if (match?.[1] && match[2] && match[3] !== undefined) {
      requirements.push({ key: match[1], op: match[2] === "!=" ? "!=" : "=", values: [match[3]] });
      continue;
    }
    match = /^([^\s!=(),]+)$/.exec(part);
    if (match?.[1]) {
      requirements.push({ key: match[1], op: "exists", values: [] });
      continue;
    }
    throw badRequest(
      `unable to parse requirement: found '${part}', expected: !, identifier, or 'end of string'`,
    );
  }
  return requirements;
}

function parseFieldSelector(text: string): FieldRequirement[] {
  const requirements: FieldRequirement[] = [];
  for (const raw of text.split(",")) {
    const part = raw.trim();
    if (!part) continue;
    const match = /^([^!=\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!match?.[1] || !match[2] || match[3] === undefined) {
      throw badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    }
    const field = match[1];
    if (field !== "metadata.name" && field !== "metadata.namespace") {
      throw badRequest(
        `"${field}" is not a known field selector: only "metadata.name", "metadata.namespace"`,
      );
    }
    requirements.push({ field, op: match[2] === "!=" ? "!=" : "=", value: match[3] });
  }
  return requirements;
}

function matchesLabels(object: KernelObject, requirements: LabelRequirement[]): boolean {
  const labels = object.metadata.labels ?? {};
  return requirements.every(({ key, op, values }) => {
    const has = Object.hasOwn(labels, key);
    const value = labels[key];
    switch (op) {
      case "exists":
        return has;
      case "!exists":
        return !has;
      case "=":
        return has && value === values[0];
      case "!=":
        return !has || value !== values[0];
      case "in":
        return has && value !== undefined && values.includes(value);
      case "notin":
        return !has || value === undefined || !values.includes(value);
      default:
        return false;
    }
  });
}

function matchesFields(object: KernelObject, requirements: FieldRequirement[]): boolean {
  return requirements.every(({ field, op, value }) => {
    const actual = field === "metadata.name" ? object.metadata.name : object.metadata.namespace;
    return op === "=" ? actual === value : actual !== value;
  });
}

function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    else if (c === "," && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

// ---- patches ----

/** RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return clone(patch);
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** RFC 6902 JSON patch (add, remove, replace, move, copy, test); a failing op is 422 as in Kubernetes. */
function applyJsonPatch(document: unknown, operations: unknown[]): unknown {
  let doc = clone(document);
  for (const operation of operations) {
    if (!isRecord(operation) || typeof operation.op !== "string" || typeof operation.path !== "string") {
      throw badRequest("json: cannot unmarshal patch operation: missing op or path");
    }
    const { op, path } = operation;
    const fail = (why: string) =>
      new KubeStatusError(
        422,
        "Invalid",
        `the server rejected our request due to an error in our request: ${why}`,
      );
    switch (op) {
      case "add":
        if (!("value" in operation)) throw fail(`missing value for ${op} ${path}`);
        doc = pointerSet(doc, path, clone(operation.value), "add", fail);
        break;
      case "replace":
        if (!("value" in operation)) throw fail(`missing value for ${op} ${path}`);
        doc = pointerSet(doc, path, clone(operation.value), "replace", fail);
        break;
      case "remove":
        doc = pointerRemove(doc, path, fail);
        break;
      case "test":
        if (!isDeepStrictEqual(pointerGet(doc, path, fail), operation.value)) {
          throw fail(`testing value ${path} failed: test failed`);
        }
        break;
      case "move":
      case "copy": {
        if (typeof operation.from !== "string") throw fail(`missing from for ${op} ${path}`);
        const value = clone(pointerGet(doc, operation.from, fail));
        if (op === "move") doc = pointerRemove(doc, operation.from, fail);
        doc = pointerSet(doc, path, value, "add", fail);
        break;
      }
      default:
        throw fail(`Unexpected kind: ${op}`);
    }
  }
  return doc;
}

function pointerTokens(path: string, fail: (why: string) => Error): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw fail(`invalid JSON pointer "${path}"`);
  return path
    .slice(1)
    .split("/")
    .map((token) => token.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function pointerGet(doc: unknown, path: string, fail: (why: string) => Error): unknown {
  let node = doc;
  for (const token of pointerTokens(path, fail)) {
    if (Array.isArray(node)) node = node[Number(token)];
    else if (isRecord(node) && Object.hasOwn(node, token)) node = node[token];
    else throw fail(`jsonpatch: path ${path} does not exist`);
    if (node === undefined) throw fail(`jsonpatch: path ${path} does not exist`);
  }
  return node;
}

function pointerParent(
  doc: unknown,
  path: string,
  fail: (why: string) => Error,
): { parent: unknown; token: string } {
  const tokens = pointerTokens(path, fail);
  const token = tokens.pop();
  if (token === undefined) return { parent: undefined, token: "" };
  const parentPath = tokens.map((t) => `/${t.replaceAll("~", "~0").replaceAll("/", "~1")}`).join("");
  return { parent: pointerGet(doc, parentPath, fail), token };
}

function pointerSet(
  doc: unknown,
  path: string,
  value: unknown,
  mode: "add" | "replace",
  fail: (why: string) => Error,
): unknown {
  if (path === "") return value;
  const { parent, token } = pointerParent(doc, path, fail);
  if (Array.isArray(parent)) {
    const index = token === "-" ? parent.length : Number(token);
    if (
      !Number.isInteger(index) ||
      index < 0 ||
      index > parent.length ||
      (mode === "replace" && index >= parent.length)
    ) {
      throw fail(`jsonpatch: index ${token} out of bounds at ${path}`);
    }
    if (mode === "add") parent.splice(index, 0, value);
    else parent[index] = value;
  } else if (isRecord(parent)) {
    if (mode === "replace" && !Object.hasOwn(parent, token)) {
      throw fail(`jsonpatch replace operation does not apply: doc is missing key: ${path}`);
    }
    parent[token] = value;
  } else {
    throw fail(`jsonpatch ${mode} operation does not apply: doc is missing path: ${path}`);
  }
  return doc;
}

function pointerRemove(doc: unknown, path: string, fail: (why: string) => Error): unknown {
  const { parent, token } = pointerParent(doc, path, fail);
  if (Array.isArray(parent)) {
    const index = Number(token);
    if (!Number.isInteger(index) || index < 0 || index >= parent.length) {
      throw fail(`jsonpatch: index ${token} out of bounds at ${path}`);
    }
    parent.splice(index, 1);
  } else if (isRecord(parent) && Object.hasOwn(parent, token)) {
    delete parent[token];
  } else {
    throw fail(`jsonpatch remove operation does not apply: doc is missing path: ${path}`);
  }
  return doc;
}

// ---- Status helpers ----

function detailsFor(name: string): Record<string, unknown> {
  return { name, group: KERNEL_RESOURCE.group, kind: KERNEL_RESOURCE.plural };
}

function notFound(name: string): KubeStatusError {
  return new KubeStatusError(404, "NotFound", `${QUALIFIED} "${name}" not found`, detailsFor(name));
}

function conflict(name: string): KubeStatusError {
  return new KubeStatusError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${QUALIFIED} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    detailsFor(name),
  );
}

function invalid(name: string, causes: Cause[]): KubeStatusError {
  const summary = causes.map((c) => `${c.field}: ${c.message}`).join(", ");
  const subject = `${KERNEL_RESOURCE.kind}.${KERNEL_RESOURCE.group} "${name}"`;
  return new KubeStatusError(
    422,
    "Invalid",
    `${subject} is invalid: ${causes.length > 1 ? `[${summary}]` : summary}`,
    { name, group: KERNEL_RESOURCE.group, kind: KERNEL_RESOURCE.kind, causes },
  );
}

function badRequest(message: string): KubeStatusError {
  return new KubeStatusError(400, "BadRequest", message);
}

function pathNotFound(): KubeStatusError {
  return new KubeStatusError(404, "NotFound", "the server could not find the requested resource", {});
}

function methodNotAllowed(): KubeStatusError {
  return new KubeStatusError(
    405,
    "MethodNotAllowed",
    "the server does not allow this method on the requested resource",
    {},
  );
}

function unsupportedMediaType(accepted: string[]): KubeStatusError {
  return new KubeStatusError(
    415,
    "UnsupportedMediaType",
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(", ")}`,
  );
}

/** What `failNext` answers: the reason and message the apiserver (or its front) uses for that code. */
function injected(code: number, message: string | undefined): KubeStatusError {
  const known: Record<number, [string, string]> = {
    400: ["BadRequest", "bad request"],
    401: ["Unauthorized", "Unauthorized"],
    403: ["Forbidden", `forbidden: User "system:anonymous" cannot do this to resource "${QUALIFIED}"`],
    404: ["NotFound", "the server could not find the requested resource"],
    409: ["Conflict", "Operation cannot be fulfilled: the object has been modified"],
    410: ["Gone", "the resource is gone"],
    422: ["Invalid", "the server rejected our request due to an error in our request"],
    429: ["TooManyRequests", "Too many requests, please try again later."],
    500: ["InternalError", "Internal error occurred: injected fault"],
    503: ["ServiceUnavailable", "the server is currently unable to handle the request"],
    504: ["Timeout", "Timeout: request did not complete within the allowed duration"],
  };
  const [reason, text] = known[code] ?? ["InternalError", `injected fault (${code})`];
  const retry = code === 429 || code === 503 || code === 504;
  return new KubeStatusError(
    code,
    reason,
    message ?? text,
    retry ? { retryAfterSeconds: 1 } : undefined,
    retry ? { "Retry-After": "1" } : {},
  );
}

function discovery(): Record<string, unknown> {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: API_VERSION,
    resources: [
      {
        name: KERNEL_RESOURCE.plural,
        singularName: KERNEL_RESOURCE.kind.toLowerCase(),
        namespaced: true,
        kind: KERNEL_RESOURCE.kind,
        verbs: ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
      },
      {
        name: `${KERNEL_RESOURCE.plural}/status`,
        singularName: "",
        namespaced: true,
        kind: KERNEL_RESOURCE.kind,
        verbs: ["get", "patch", "update"],
      },
    ],
  };
}

// ---- plumbing ----

function send(res: ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    "Content-Type": "application/json",
    "Content-Length": String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function mediaType(req: IncomingMessage): string | undefined {
  return req.headers["content-type"]?.split(";")[0]?.trim().toLowerCase() || undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function drain(req: IncomingMessage): Promise<void> {
  await readBody(req);
}

/** The request body as JSON; 415 for a content type outside `accepted`, 400 when it does not parse. */
async function readJsonBody(req: IncomingMessage, accepted: string[], optional = false): Promise<unknown> {
  const text = await readBody(req);
  if (optional && text.trim() === "") return undefined;
  const type = mediaType(req);
  if (type === undefined || !accepted.includes(type)) {
    throw unsupportedMediaType([...accepted, "application/yaml", "application/vnd.kubernetes.protobuf"]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw badRequest(
      `error decoding the request body: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

function compareKeys(a: KernelObject, b: KernelObject): number {
  const ka = `${a.metadata.namespace}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** RFC 3339 at second precision, as Kubernetes writes timestamps. */
function timestamp(): string {
  return `${new Date().toISOString().slice(0, 19)}Z`;
}

/** The alphabet and length of `generateName` suffixes. */
function randomSuffix(): string {
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let out = "";
  for (let i = 0; i < 5; i++) out += alphabet[Math.floor(Math.random() * alphabet.length)];
  return out;
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}
