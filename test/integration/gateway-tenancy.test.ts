import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { type RunningGateway, startGateway } from "../support/gateway.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/**
 * Tenancy on a stock Enterprise Gateway (default kernelspec, no process proxy named: EG runs every
 * kernel as a local process of its own user). As a user would try it: a kernel of one caller can
 * write a file another caller's kernel reads, so the deployment serves one caller unless the
 * operator allows sharing.
 */
describe("gateway backend: callers on a gateway whose kernels share one host", { timeout: 300_000 }, () => {
  let gateway: RunningGateway;

  /** The gateway's own count of its kernels, asked directly. */
  async function gatewayKernels(): Promise<number> {
    const res = await fetch(`${gateway.url}/api/kernels`, {
      headers: { Authorization: `token ${gateway.token}` },
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as unknown[]).length;
  }

  function serve(policy: "refuse" | "allow"): Promise<LocalApi> {
    return startLocalApi({
      PYBOX_BACKEND: "gateway",
      PYBOX_GATEWAY_URL: gateway.url,
      PYBOX_GATEWAY_TOKEN: gateway.token,
      PYBOX_GATEWAY_SHARED_HOST: policy,
    });
  }

  before(async () => {
    gateway = await startGateway("enterprise", ["--EnterpriseGatewayApp.list_kernels=True"]);
  });

  after(async () => {
    await gateway?.stop();
  });

  it("serves the first caller and refuses a second with 503 HOST_SHARED, starting nothing for it", async () => {
    const server = await serve("refuse");
    try {
      assert.match(server.output(), /Note: the gateway runs kernelspec 'python3' \(no process proxy\)/);
      const alice = server.api.as("alice");
      const bob = server.api.as("bob");
      assert.equal((await alice.start({ kernelId: "a" })).status, 201);
      const before = await gatewayKernels();

      const refused = await bob.start({ kernelId: "b" });

      assert.equal(refused.status, 503, refused.text);
      const error = (refused.body as unknown as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "HOST_SHARED");
      assert.match(error.message, /serves one caller only/);
      assert.match(error.message, /PYBOX_GATEWAY_SHARED_HOST=allow/);
      assert.doesNotMatch(error.message, /alice/);
      assert.equal(await gatewayKernels(), before, "a kernel was started for the refused caller");
      assert.equal((await bob.get("a")).status, 404);
      assert.equal((await alice.start({ kernelId: "a2" })).status, 201, "the first caller is served still");
    } finally {
      await server.stop();
    }
  });

  it("lets every caller in when the operator allows sharing, warning once at start-up", async () => {
    const server = await serve("allow");
    try {
      const alice = server.api.as("alice");
      const bob = server.api.as("bob");
      assert.equal((await alice.start({ kernelId: "a" })).status, 201);
      assert.equal((await bob.start({ kernelId: "b" })).status, 201);
      // What the sharing means, shown as a user would find it: one caller's file, read by another.
      await alice.run("a", "open('/tmp/pybox-shared-host-test', 'w').write('secret of alice')");
      assert.equal(await bob.eval("b", "open('/tmp/pybox-shared-host-test').read()"), "'secret of alice'");

      const warnings = server.output().match(/PYBOX_GATEWAY_SHARED_HOST=allow lets them/g) ?? [];
      assert.equal(warnings.length, 1, server.output());
      assert.ok(
        server.output().indexOf("PYBOX_GATEWAY_SHARED_HOST=allow lets them") <
          server.output().indexOf("listening on"),
        "the warning did not come at start-up",
      );
    } finally {
      await server.stop();
      await rm("/tmp/pybox-shared-host-test", { force: true });
    }
  });
});
