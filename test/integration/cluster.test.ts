import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ClusterHarness, startClusterHarness, TEST_IMAGE } from "../support/cluster.ts";

/*
 * What needs the API server or the controller to misbehave on cue (quota refusals, 5xx, dropped
 * watches, a controller that never annotates or annotates nonsense, the legacy annotation name):
 * against the doubles. The behaviour and files suites run on the real peers in test/cluster/.
 */

type ErrorBody = { error: { code: string; message: string } };

describe("cluster backend against the Kubernetes API double", { timeout: 300_000 }, () => {
  describe("kernel resources", () => {
    let harness: ClusterHarness;

    before(async () => {
      harness = await startClusterHarness({
        env: { PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: TEST_IMAGE, TEAM: "ops" }) },
      });
    });

    after(async () => {
      await harness?.stop();
    });

    it("creates a Kernel as the controller expects it and runs code straight on the pod", async () => {
      const api = harness.server.api.as("Alice@Example.com");
      const started = await api.start({ kernelId: "k1", cwd: "/tmp", env: { PROJECT: "p" } });
      assert.equal(started.status, 201, started.text);

      const [kernel] = harness.kube.store.list("kernels");
      assert.ok(kernel, "one Kernel resource");
      const template = (
        kernel.spec as {
          template: { spec: { restartPolicy: string; containers: Array<Record<string, unknown>> } };
        }
      ).template;
      const main = template.spec.containers[0] ?? {};
      const env = Object.fromEntries(
        (main.env as Array<{ name: string; value: string }>).map((e) => [e.name, e.value]),
      );
      const kernelId = kernel.metadata.labels?.["jupyter.org/kernel-id"] ?? "";

      assert.match(kernelId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(kernel.metadata.name, `${env.KERNEL_USERNAME}-${kernelId}`);
      assert.equal(main.name, "main");
      assert.equal(main.image, TEST_IMAGE);
      assert.equal(main.workingDir, "/tmp");
      assert.equal(template.spec.restartPolicy, "Never");
      assert.equal(env.KERNEL_ID, kernelId);
      assert.equal(env.KERNEL_IMAGE, TEST_IMAGE);
      assert.equal(env.KERNEL_WORKING_DIR, "/tmp");
      assert.equal(env.TEAM, "ops");
      assert.equal(env.PROJECT, "p");
      assert.equal((kernel.spec as { idleTimeoutSeconds: number }).idleTimeoutSeconds, 3600);
      assert.equal(await api.eval("k1", "import os\nos.environ['KERNEL_ID']"), `'${kernelId}'`);
      const before = harness.kube.requests.length;
      await api.run("k1", "1+1");
      assert.equal(
        harness.kube.requests.length,
        before,
        "runs go to the pod, not through the Kubernetes API",
      );

      const stopped = await api.stop("k1");
      assert.equal(stopped.status, 204);
      assert.equal(harness.kube.store.list("kernels").length, 0, "the Kernel resource was deleted");
    });

    it("answers 429 with the API server's quota message and makes nothing", async () => {
      harness.kube.setQuota(0);
      try {
        const res = await harness.server.api.as("bob").start({ kernelId: "over-quota" });

        assert.equal(res.status, 429, res.text);
        const body = res.body as unknown as ErrorBody;
        assert.equal(body.error.code, "CAPACITY");
        assert.match(body.error.message, /exceeded quota/);
        assert.ok(res.headers.get("retry-after"));
        assert.equal((await harness.server.api.as("bob").get("over-quota")).status, 404);
      } finally {
        harness.kube.setQuota(undefined);
      }
    });

    it("keeps waiting through a dropped watch and still starts the kernel", async () => {
      const starting = harness.server.api.as("carol").start({ kernelId: "dropped" });
      for (let i = 0; i < 20 && harness.kube.openWatches() === 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      harness.kube.dropWatches();

      const res = await starting;

      assert.equal(res.status, 201, res.text);
      assert.equal(await harness.server.api.as("carol").eval("dropped", "6 * 7"), "42");
    });

    it("answers 503 from Kubernetes as a retryable error", async () => {
      harness.kube.failNext(1, 503, { when: (r) => r.method === "POST" });

      const res = await harness.server.api.as("dave").start({ kernelId: "flaky" });

      assert.equal(res.status, 503, res.text);
      assert.equal((res.body as unknown as ErrorBody).error.code, "BACKEND_UNAVAILABLE");
      assert.ok(res.headers.get("retry-after"));
      assert.equal((await harness.server.api.as("dave").start({ kernelId: "flaky" })).status, 201);
    });
  });

  describe("kernels that do not come up", () => {
    let harness: ClusterHarness;

    before(async () => {
      harness = await startClusterHarness({
        env: { PYBOX_START_TIMEOUT_MS: "2000" },
      });
    });

    after(async () => {
      await harness?.stop();
    });

    for (const [label, behaviour, status, code, pattern] of [
      ["never ready (image pull error)", { neverReady: true }, 503, "KERNEL_LAUNCH_FAILED", /ErrImagePull/],
      [
        "ready without a connection annotation",
        { noAnnotation: true },
        503,
        "KERNEL_LAUNCH_FAILED",
        /did not become ready/,
      ],
      ["annotated with an invalid connection", { badConnection: true }, 502, "BACKEND_ERROR", /unexpected/],
    ] as const) {
      it(`fails clearly and deletes the resource when a kernel is ${label}`, async () => {
        const api = harness.server.api.as(`user-${code.length}-${status}-${label.length}`);
        harness.controller.setBehaviour(behaviour);
        try {
          const res = await api.start({ kernelId: "doomed" });

          assert.equal(res.status, status, res.text);
          const body = res.body as unknown as ErrorBody;
          assert.equal(body.error.code, code);
          assert.match(body.error.message, pattern);
          assert.equal(harness.kube.store.list("kernels").length, 0, "the failed Kernel was deleted");
          assert.equal((await api.get("doomed")).status, 404);
        } finally {
          harness.controller.setBehaviour({});
        }
      });
    }

    it("accepts the connection under the older annotation name", async () => {
      harness.controller.setBehaviour({ legacyAnnotation: true });
      try {
        const api = harness.server.api.as("legacy");
        assert.equal((await api.start({ kernelId: "old" })).status, 201);
        assert.equal(await api.eval("old", "6 * 7"), "42");
        await api.stop("old");
      } finally {
        harness.controller.setBehaviour({});
      }
    });
  });

  describe("launchers that clash with themselves", () => {
    let harness: ClusterHarness;

    before(async () => {
      harness = await startClusterHarness({ env: { PYBOX_START_TIMEOUT_MS: "20000" } });
    });

    after(async () => {
      await harness?.stop();
    });

    it("launches afresh once when the launcher announces a port twice, then fails clearly and deletes both", async () => {
      const api = harness.server.api.as("clash");
      harness.controller.setBehaviour({ portClash: true });
      const created = new Set<string>();
      const watching = setInterval(() => {
        for (const kernel of harness.kube.store.list("kernels")) created.add(kernel.metadata.name);
      }, 5);
      try {
        const res = await api.start({ kernelId: "clash" });

        assert.equal(res.status, 503, res.text);
        const body = res.body as unknown as ErrorBody;
        assert.equal(body.error.code, "KERNEL_LAUNCH_FAILED");
        assert.match(body.error.message, /\(2 launches\): the kernel launcher announced port \d+ twice/);
        assert.equal(created.size, 2, "one fresh launch, no more");
        assert.equal(harness.kube.store.list("kernels").length, 0, "both Kernels were deleted");
      } finally {
        clearInterval(watching);
        harness.controller.setBehaviour({});
      }
    });

    it("starts on the fresh launch when only the first launcher clashed", async () => {
      const api = harness.server.api.as("clash-once");
      harness.controller.setBehaviour({ portClash: true });
      const created: string[] = [];
      const watching = setInterval(() => {
        for (const kernel of harness.kube.store.list("kernels")) {
          if (!created.includes(kernel.metadata.name)) created.push(kernel.metadata.name);
          harness.controller.setBehaviour({});
        }
      }, 5);
      try {
        const res = await api.start({ kernelId: "once" });

        assert.equal(res.status, 201, res.text);
        assert.equal(await api.eval("once", "6 * 7"), "42");
        assert.equal(created.length, 2, "one fresh launch");
        const left = harness.kube.store.list("kernels").map((k) => k.metadata.name);
        assert.deepEqual(left, [created[1]], "the clashing Kernel was deleted");
        await api.stop("once");
      } finally {
        clearInterval(watching);
        harness.controller.setBehaviour({});
      }
    });
  });
});
