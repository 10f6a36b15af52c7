import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { readProcess } from "../../lib/backends/process.ts";
import { KernelClient } from "../../lib/jupyter/client.ts";
import { ConnectionInfoSchema } from "../../lib/jupyter/connection.ts";
import { type KubernetesDouble, startKubernetesDouble } from "../support/k8s-double.ts";
import {
  CONNECTION_ANNOTATION,
  KERNEL_ID_LABEL,
  LEGACY_CONNECTION_ANNOTATION,
  startKernelControllerDouble,
} from "../support/kernel-controller-double.ts";

const NS = "pybox";
const RESOURCE = { group: "jupyter.org", version: "v1", plural: "kernels" } as const;
const COLLECTION = `/apis/jupyter.org/v1/namespaces/${NS}/kernels`;
/** client-node sends JSON Patch by default; a merge patch needs its Content-Type set per call. */
const MERGE_PATCH = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

type Obj = Record<string, unknown> & {
  metadata: Record<string, unknown> & { name: string; resourceVersion: string };
};

function kubeConfig(url: string, token = "t"): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "double", server: url, skipTLSVerify: true }],
    users: [{ name: "u", token }],
    contexts: [{ name: "c", cluster: "double", user: "u" }],
    currentContext: "c",
  });
  return kc;
}

function kernelBody(
  name: string,
  labels: Record<string, string> = {},
  container: Record<string, unknown> = {},
) {
  return {
    apiVersion: "jupyter.org/v1",
    kind: "Kernel",
    metadata: { name, labels },
    spec: {
      template: {
        spec: {
          restartPolicy: "Never",
          containers: [{ name: "main", image: "pybox/kernel:1", ...container }],
        },
      },
      idleTimeoutSeconds: 3600,
    },
  };
}

/** The ApiException a call ends in: its code and its body parsed (client-node hands the raw text). */
async function apiError(call: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof ApiException, `expected ApiException, got ${String(error)}`);
    const text: unknown = error.body;
    return { code: error.code, body: typeof text === "string" && text ? JSON.parse(text) : {} };
  }
  assert.fail("expected the call to fail");
}

interface WatchEvent {
  type: string;
  object: Obj;
}

/** A client-node watch with its events collected and its done callback as a promise. */
async function watch(kc: KubeConfig, path: string, query: Record<string, string | number | boolean>) {
  const events: WatchEvent[] = [];
  let finish: (error: unknown) => void = () => {};
  const done = new Promise<unknown>((resolve) => {
    finish = resolve;
  });
  const controller = await new Watch(kc).watch(
    path,
    query,
    (type: string, object: Obj) => events.push({ type, object }),
    (error: unknown) => finish(error ?? null),
  );
  return {
    events,
    done,
    stop: () => controller.abort(),
    async until(predicate: (events: WatchEvent[]) => boolean, ms = 5_000): Promise<void> {
      const deadline = Date.now() + ms;
      while (!predicate(events)) {
        if (Date.now() > deadline) assert.fail(`watch did not see it; events: ${JSON.stringify(events)}`);
        await sleep(10);
      }
    },
  };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("Kubernetes API double, through @kubernetes/client-node", () => {
  let double: KubernetesDouble;
  let kc: KubeConfig;
  let api: CustomObjectsApi;

  before(async () => {
    double = await startKubernetesDouble({ token: "t" });
    kc = kubeConfig(double.url);
    api = kc.makeApiClient(CustomObjectsApi);
  });
  after(async () => {
    await double.close();
  });

  it("creates, gets, lists by label and field, and deletes a Kernel", async () => {
    const created: Obj = await api.createNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      body: kernelBody("alice-k1", { [KERNEL_ID_LABEL]: "k1", owner: "alice" }),
    });
    assert.equal(created.metadata.name, "alice-k1");
    assert.equal(created.metadata.namespace, NS);
    assert.match(String(created.metadata.uid), /^[0-9a-f-]{36}$/);
    assert.match(created.metadata.resourceVersion, /^\d+$/);
    assert.equal(created.metadata.generation, 1);
    assert.match(String(created.metadata.creationTimestamp), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await api.createNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      body: kernelBody("bob-k2", { [KERNEL_ID_LABEL]: "k2", owner: "bob" }),
    });

    const got: Obj = await api.getNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "alice-k1" });
    assert.deepEqual(got, created);

    const byLabel = await api.listNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      labelSelector: "owner=alice",
    });
    assert.equal(byLabel.kind, "KernelList");
    assert.equal(byLabel.apiVersion, "jupyter.org/v1");
    assert.match(byLabel.metadata.resourceVersion, /^\d+$/);
    assert.deepEqual(
      byLabel.items.map((o: Obj) => o.metadata.name),
      ["alice-k1"],
    );
    const byExistence = await api.listNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      labelSelector: `${KERNEL_ID_LABEL},owner in (alice,bob)`,
    });
    assert.deepEqual(
      byExistence.items.map((o: Obj) => o.metadata.name),
      ["alice-k1", "bob-k2"],
    );
    const byField = await api.listNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      fieldSelector: "metadata.name=bob-k2",
    });
    assert.deepEqual(
      byField.items.map((o: Obj) => o.metadata.name),
      ["bob-k2"],
    );

    const deleted: Obj = await api.deleteNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      name: "alice-k1",
    });
    assert.equal(deleted.metadata.name, "alice-k1");
    await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "bob-k2" });
    assert.equal(
      (await apiError(api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "bob-k2" }))).code,
      404,
    );
    assert.deepEqual(double.store.list(NS), []);
    assert.ok(double.requests.some((r) => r.method === "POST" && r.path === COLLECTION && r.status === 201));
  });

  it("answers 409 AlreadyExists to a second create of the same name", async () => {
    const body = kernelBody("dup");
    await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body });
    try {
      const { code, body: status } = await apiError(
        api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body }),
      );
      assert.equal(code, 409);
      assert.equal(status.reason, "AlreadyExists");
      assert.equal(status.message, 'kernels.jupyter.org "dup" already exists');
    } finally {
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "dup" });
    }
  });

  it("answers 404 NotFound with the apiserver's Status body", async () => {
    const { code, body } = await apiError(
      api.getNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "x" }),
    );
    assert.equal(code, 404);
    assert.deepEqual(body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'kernels.jupyter.org "x" not found',
      reason: "NotFound",
      details: { name: "x", group: "jupyter.org", kind: "kernels" },
      code: 404,
    });
  });

  it("answers 403 exceeded quota beyond setQuota, 422 for an invalid name, 401 without the token", async () => {
    double.setQuota(1);
    try {
      await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("q1") });
      const { code, body } = await apiError(
        api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("q2") }),
      );
      assert.equal(code, 403);
      assert.equal(body.reason, "Forbidden");
      assert.match(
        String(body.message),
        /^kernels\.jupyter\.org "q2" is forbidden: exceeded quota: kernels, /,
      );
      assert.match(
        String(body.message),
        /used: count\/kernels\.jupyter\.org=1, limited: count\/kernels\.jupyter\.org=1$/,
      );
    } finally {
      double.setQuota(undefined);
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "q1" });
    }

    const invalid = await apiError(
      api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("Alice_K1") }),
    );
    assert.equal(invalid.code, 422);
    assert.equal(invalid.body.reason, "Invalid");
    const longLabel = await apiError(
      api.createNamespacedCustomObject({
        ...RESOURCE,
        namespace: NS,
        body: kernelBody("long", { [KERNEL_ID_LABEL]: "x".repeat(64) }),
      }),
    );
    assert.equal(longLabel.code, 422);

    const stranger = kubeConfig(double.url, "wrong").makeApiClient(CustomObjectsApi);
    const unauthorized = await apiError(
      stranger.getNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "x" }),
    );
    assert.equal(unauthorized.code, 401);
  });

  it("merge-patches annotations when the call sets Content-Type; client-node's default is JSON Patch", async () => {
    await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("patchme") });
    try {
      const patched: Obj = await api.patchNamespacedCustomObject(
        {
          ...RESOURCE,
          namespace: NS,
          name: "patchme",
          body: { metadata: { annotations: { a: "1", b: "2" } } },
        },
        MERGE_PATCH,
      );
      assert.deepEqual(patched.metadata.annotations, { a: "1", b: "2" });
      const removed: Obj = await api.patchNamespacedCustomObject(
        { ...RESOURCE, namespace: NS, name: "patchme", body: { metadata: { annotations: { a: null } } } },
        MERGE_PATCH,
      );
      assert.deepEqual(removed.metadata.annotations, { b: "2" });
      assert.ok(Number(removed.metadata.resourceVersion) > Number(patched.metadata.resourceVersion));
      const patchRequest = double.requests.findLast((r) => r.method === "PATCH");
      assert.equal(patchRequest?.contentType, "application/merge-patch+json");

      // Without the header option the same object goes out as application/json-patch+json: 400.
      const wrong = await apiError(
        api.patchNamespacedCustomObject({
          ...RESOURCE,
          namespace: NS,
          name: "patchme",
          body: { metadata: { annotations: { c: "3" } } },
        }),
      );
      assert.equal(wrong.code, 400);
      assert.equal(
        double.requests.findLast((r) => r.method === "PATCH")?.contentType,
        "application/json-patch+json",
      );
      // ... which is right for an array of operations (note `~1` for the `/` in an annotation key).
      const ops: Obj = await api.patchNamespacedCustomObject({
        ...RESOURCE,
        namespace: NS,
        name: "patchme",
        body: [{ op: "add", path: "/metadata/annotations/jupyter.org~1x", value: "y" }],
      });
      assert.deepEqual(ops.metadata.annotations, { b: "2", "jupyter.org/x": "y" });

      const notFound = await apiError(
        api.patchNamespacedCustomObject(
          { ...RESOURCE, namespace: NS, name: "absent", body: { metadata: { annotations: { a: "1" } } } },
          MERGE_PATCH,
        ),
      );
      assert.equal(notFound.code, 404);
      const strategic = await apiError(
        api.patchNamespacedCustomObject(
          { ...RESOURCE, namespace: NS, name: "patchme", body: {} },
          setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
        ),
      );
      assert.equal(strategic.code, 415);
    } finally {
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "patchme" });
    }
  });

  it("the status subresource changes only .status; the main resource ignores .status", async () => {
    await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("stat") });
    try {
      const ready = { conditions: [{ type: "Ready", status: "True", reason: "KernelReady" }] };
      const withStatus: Obj = await api.patchNamespacedCustomObjectStatus(
        {
          ...RESOURCE,
          namespace: NS,
          name: "stat",
          body: { status: ready, metadata: { annotations: { ignored: "yes" } } },
        },
        MERGE_PATCH,
      );
      assert.deepEqual(withStatus.status, ready);
      assert.equal((withStatus.metadata as { annotations?: unknown }).annotations, undefined);

      const viaMain: Obj = await api.patchNamespacedCustomObject(
        {
          ...RESOURCE,
          namespace: NS,
          name: "stat",
          body: { status: { conditions: [] }, spec: { idleTimeoutSeconds: 60 } },
        },
        MERGE_PATCH,
      );
      assert.deepEqual(viaMain.status, ready);
      assert.equal(viaMain.metadata.generation, 2);
      const status: Obj = await api.getNamespacedCustomObjectStatus({
        ...RESOURCE,
        namespace: NS,
        name: "stat",
      });
      assert.deepEqual(status.status, ready);

      // A no-op patch leaves the resourceVersion alone.
      const again: Obj = await api.patchNamespacedCustomObjectStatus(
        { ...RESOURCE, namespace: NS, name: "stat", body: { status: ready } },
        MERGE_PATCH,
      );
      assert.equal(again.metadata.resourceVersion, viaMain.metadata.resourceVersion);
    } finally {
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "stat" });
    }
  });

  it("a watch from a resourceVersion replays later events, then streams live ones", async () => {
    const created: Obj = await api.createNamespacedCustomObject({
      ...RESOURCE,
      namespace: NS,
      body: kernelBody("watched", { app: "pybox" }),
    });
    await api.patchNamespacedCustomObject(
      { ...RESOURCE, namespace: NS, name: "watched", body: { metadata: { annotations: { step: "1" } } } },
      MERGE_PATCH,
    );
    const w = await watch(kc, COLLECTION, {
      resourceVersion: created.metadata.resourceVersion,
      labelSelector: "app=pybox",
    });
    try {
      await w.until((events) => events.length >= 1);
      assert.equal(w.events[0]?.type, "MODIFIED");
      assert.deepEqual(w.events[0]?.object.metadata.annotations, { step: "1" });

      await api.patchNamespacedCustomObjectStatus(
        { ...RESOURCE, namespace: NS, name: "watched", body: { status: { phase: "Running" } } },
        MERGE_PATCH,
      );
      await w.until((events) => events.length >= 2);
      assert.equal(w.events[1]?.type, "MODIFIED");
      assert.deepEqual(w.events[1]?.object.status, { phase: "Running" });

      // Leaving the selector reads as DELETED on this watch; the object itself lives on.
      await api.patchNamespacedCustomObject(
        { ...RESOURCE, namespace: NS, name: "watched", body: { metadata: { labels: { app: "other" } } } },
        MERGE_PATCH,
      );
      await w.until((events) => events.length >= 3);
      assert.equal(w.events[2]?.type, "DELETED");
      assert.ok(double.store.get(NS, "watched"));
    } finally {
      w.stop();
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "watched" });
    }
  });

  it("without a resourceVersion a watch starts with ADDED for what exists; timeoutSeconds ends it", async () => {
    await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("present") });
    try {
      const w = await watch(kc, COLLECTION, { fieldSelector: "metadata.name=present", timeoutSeconds: 1 });
      await w.until((events) => events.length >= 1);
      assert.equal(w.events[0]?.type, "ADDED");
      assert.equal(w.events[0]?.object.metadata.name, "present");
      assert.equal(await within(w.done, 5_000, "the watch to time out"), null);
    } finally {
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "present" });
    }
  });

  it("dropWatches ends an open watch abruptly: the done callback fires", async () => {
    const w = await watch(kc, COLLECTION, { resourceVersion: double.store.resourceVersion() });
    await w.until(() => double.openWatches() === 1);
    double.dropWatches();
    const result = await within(w.done, 5_000, "the dropped watch's done callback");
    assert.equal(double.openWatches(), 0);
    // client-node 2.x (undici's fetch) reports an abrupt end as "terminated", caused by the socket
    // closing under it, not as a clean end (null).
    assert.ok(result instanceof Error, String(result));
    assert.equal(((result as Error).cause as NodeJS.ErrnoException | undefined)?.code, "UND_ERR_SOCKET");
  });

  it("after compactHistory a watch from an old resourceVersion gets ERROR 410 Expired and ends", async () => {
    const old = double.store.resourceVersion();
    await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody("compacted") });
    try {
      double.compactHistory();
      const w = await watch(kc, COLLECTION, { resourceVersion: old });
      assert.equal(await within(w.done, 5_000, "the expired watch to end"), null);
      assert.equal(w.events.length, 1);
      assert.equal(w.events[0]?.type, "ERROR");
      assert.equal(w.events[0]?.object.code, 410);
      assert.equal(w.events[0]?.object.reason, "Expired");
      // The current resourceVersion is still served.
      const current = await watch(kc, COLLECTION, { resourceVersion: double.store.resourceVersion() });
      await w.until(() => double.openWatches() === 1);
      current.stop();
    } finally {
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "compacted" });
    }
  });

  it("failNext answers the next (selected) requests with a Status of that code, watches included", async () => {
    double.failNext(2, 503);
    const first = await apiError(api.listNamespacedCustomObject({ ...RESOURCE, namespace: NS }));
    assert.equal(first.code, 503);
    assert.equal(first.body.reason, "ServiceUnavailable");
    const w = await watch(kc, COLLECTION, {});
    const error = await within(w.done, 5_000, "the failed watch");
    assert.ok(error instanceof Error);
    assert.equal((error as Error & { statusCode?: number }).statusCode, 503);
    const list = await api.listNamespacedCustomObject({ ...RESOURCE, namespace: NS });
    assert.deepEqual(list.items, []);

    // `when` picks which requests fail: here watches only, as with RBAC that allows get but not watch.
    double.failNext(1, 403, { when: (request) => request.watch });
    assert.deepEqual((await api.listNamespacedCustomObject({ ...RESOURCE, namespace: NS })).items, []);
    const refused = await watch(kc, COLLECTION, {});
    const forbidden = await within(refused.done, 5_000, "the refused watch");
    assert.equal((forbidden as Error & { statusCode?: number }).statusCode, 403);
  });
});

describe("Kernel controller double", () => {
  let double: KubernetesDouble;
  let api: CustomObjectsApi;
  let workRoot: string;

  before(async () => {
    double = await startKubernetesDouble();
    api = kubeConfig(double.url).makeApiClient(CustomObjectsApi);
    workRoot = await mkdtemp(join(tmpdir(), "pybox-k8s-double-test-"));
  });
  after(async () => {
    await double.close();
    await rm(workRoot, { recursive: true, force: true });
  });

  /** Polls the Kernel through the API until `ready` says so. */
  async function waitFor(name: string, ready: (kernel: Obj) => boolean, ms = 30_000): Promise<Obj> {
    const deadline = Date.now() + ms;
    for (;;) {
      const kernel: Obj = await api.getNamespacedCustomObject({ ...RESOURCE, namespace: NS, name });
      if (ready(kernel)) return kernel;
      if (Date.now() > deadline) assert.fail(`kernel ${name} never got there: ${JSON.stringify(kernel)}`);
      await sleep(50);
    }
  }

  const readyCondition = (kernel: Obj) =>
    (
      ((kernel.status as { conditions?: unknown } | undefined)?.conditions ?? []) as Array<
        Record<string, string>
      >
    ).find((c) => c.type === "Ready");
  const annotations = (kernel: Obj) => (kernel.metadata.annotations ?? {}) as Record<string, string>;
  const isReady = (kernel: Obj) => readyCondition(kernel)?.status === "True";

  it("runs a real kernel with only the pod's env, in its workingDir, and kills it on delete", async () => {
    const controller = startKernelControllerDouble(double);
    const workingDir = join(workRoot, "alice", "work");
    try {
      await api.createNamespacedCustomObject({
        ...RESOURCE,
        namespace: NS,
        body: kernelBody(
          "alice-k1",
          { [KERNEL_ID_LABEL]: "k1" },
          {
            env: [
              { name: "KERNEL_ID", value: "k1" },
              { name: "FOO", value: "bar" },
            ],
            workingDir,
          },
        ),
      });
      const kernel = await waitFor("alice-k1", (k) => isReady(k) && CONNECTION_ANNOTATION in annotations(k));
      assert.equal(readyCondition(kernel)?.reason, "KernelReady");
      assert.equal((kernel.metadata.labels as Record<string, string>)[KERNEL_ID_LABEL], "k1");
      const annotation = annotations(kernel)[CONNECTION_ANNOTATION] ?? "";
      const info = ConnectionInfoSchema.parse(JSON.parse(annotation));
      assert.equal(info.ip, "127.0.0.1");

      const leaked = Object.keys(process.env).find((key) => !["PATH", "HOME"].includes(key));
      const client = new KernelClient(info);
      try {
        const probe = [
          "os.getcwd()",
          "os.environ.get('FOO')",
          "os.environ.get('KERNEL_ID')",
          "os.environ.get('HOME')",
        ];
        probe.push(`os.environ.get(${JSON.stringify(leaked ?? "NOT_SET_ANYWHERE")})`);
        const result = await client.execute(`import os; print(*[${probe.join(", ")}], sep="|")`, {
          timeoutMs: 10_000,
          interruptGraceMs: 2_000,
          maxOutputBytes: 1 << 20,
          maxOutputEntryBytes: 1 << 20,
        });
        assert.equal(result.status, "ok", JSON.stringify(result));
        assert.deepEqual(result.data, [{ "text/plain": `${workingDir}|bar|k1|${workingDir}|None\n` }]);
      } finally {
        client.close();
      }

      const pid = controller.kernels().get("alice-k1");
      assert.ok(pid !== undefined);
      assert.ok(await readProcess(pid));
      await api.deleteNamespacedCustomObject({ ...RESOURCE, namespace: NS, name: "alice-k1" });
      const deadline = Date.now() + 10_000;
      while (await readProcess(pid)) {
        if (Date.now() > deadline) assert.fail(`kernel process ${pid} survived the delete`);
        await sleep(50);
      }
      assert.equal(controller.kernels().has("alice-k1"), false);
    } finally {
      await controller.stop();
    }
  });

  it("plays the failure modes: ErrImagePull, the legacy annotation, a bad annotation, none at all", async () => {
    const controller = startKernelControllerDouble(double, {
      order: "ready-first",
      perKernel: {
        "fail-pull": { neverReady: true },
        "old-ctl": { legacyAnnotation: true },
        "bad-conn": { badConnection: true },
        "no-conn": { noAnnotation: true },
      },
    });
    try {
      for (const name of ["fail-pull", "old-ctl", "bad-conn", "no-conn"]) {
        await api.createNamespacedCustomObject({ ...RESOURCE, namespace: NS, body: kernelBody(name) });
      }
      const failed = await waitFor("fail-pull", (k) => readyCondition(k) !== undefined);
      assert.deepEqual(
        { ...readyCondition(failed), lastTransitionTime: undefined },
        {
          type: "Ready",
          status: "False",
          reason: "ErrImagePull",
          message: 'image "pybox/kernel:1" not found',
          lastTransitionTime: undefined,
        },
      );
      assert.equal(controller.kernels().has("fail-pull"), false);

      const legacy = await waitFor("old-ctl", (k) => LEGACY_CONNECTION_ANNOTATION in annotations(k));
      assert.equal(CONNECTION_ANNOTATION in annotations(legacy), false);
      ConnectionInfoSchema.parse(JSON.parse(annotations(legacy)[LEGACY_CONNECTION_ANNOTATION] ?? ""));

      const bad = await waitFor("bad-conn", (k) => CONNECTION_ANNOTATION in annotations(k));
      assert.equal(annotations(bad)[CONNECTION_ANNOTATION], '{"ip":"127.0.0.1"}');
      assert.equal(
        ConnectionInfoSchema.safeParse(JSON.parse(annotations(bad)[CONNECTION_ANNOTATION] ?? "")).success,
        false,
      );

      await waitFor("no-conn", isReady);
      await controller.settled();
      const none = await waitFor("no-conn", isReady);
      assert.deepEqual(annotations(none), {});
      assert.ok(controller.kernels().has("no-conn"));
    } finally {
      const pids = [...controller.kernels().values()];
      await controller.stop();
      for (const pid of pids)
        assert.equal(await readProcess(pid), undefined, `kernel ${pid} outlived stop()`);
      for (const name of ["fail-pull", "old-ctl", "bad-conn", "no-conn"]) double.store.delete(NS, name);
    }
  });
});
