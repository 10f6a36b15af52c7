import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as z from "zod";
import { refreshingCredentials } from "../../../lib/backends/credential-refresh.ts";
import type { Backend, KernelRef } from "../../../lib/backends/port.ts";
import { BackendUnavailableError, CredentialsRejectedError } from "../../../lib/errors.ts";

/** A backend whose every call fails with `error` (or succeeds when it is undefined). */
function failingBackend(error: Error | undefined): Backend {
  const answer = async <T>(value: T): Promise<T> => {
    if (error) throw error;
    return value;
  };
  const ref: KernelRef = { backend: "gateway" };
  return {
    name: "gateway",
    parseRef: () => ref,
    start: () => answer(ref),
    run: () =>
      answer({
        status: "ok" as const,
        data: [],
        error: null,
        executionCount: 1,
        durationMs: 1,
        truncated: false,
        artifacts: [],
      }),
    helper: (_ref, request) => answer(request.schema.parse(null)),
    interrupt: () => answer(undefined),
    isAlive: () => answer(true),
    stop: () => answer(undefined),
  };
}

describe("credential-refresh", () => {
  describe("refreshingCredentials", () => {
    it("reloads credentials after a call the peer refused for them, and still fails that call", async () => {
      // Prepare
      let reloads = 0;
      const backend = refreshingCredentials(
        failingBackend(new CredentialsRejectedError("token rotated")),
        () => {
          reloads++;
        },
      );
      const ref = backend.parseRef({});

      // Act & assess
      await assert.rejects(backend.start({ owner: "o", kernelId: "k", env: {} }), CredentialsRejectedError);
      await assert.rejects(backend.isAlive(ref), CredentialsRejectedError);
      await assert.rejects(backend.stop(ref), CredentialsRejectedError);
      await assert.rejects(
        backend.helper(ref, { code: "", expression: "None", schema: z.null(), timeoutMs: 1_000 }),
        CredentialsRejectedError,
      );
      assert.equal(reloads, 4);
    });

    it("leaves credentials alone on other failures and on success", async () => {
      // Prepare
      let reloads = 0;
      const reload = () => {
        reloads++;
      };
      const failing = refreshingCredentials(failingBackend(new BackendUnavailableError("down")), reload);
      const working = refreshingCredentials(failingBackend(undefined), reload);

      // Act
      await assert.rejects(failing.interrupt(failing.parseRef({})), BackendUnavailableError);
      const alive = await working.isAlive(working.parseRef({}));

      // Assess
      assert.equal(alive, true);
      assert.equal(reloads, 0);
      assert.equal(working.name, "gateway");
    });

    it("keeps the backend's warm pool, and reloads after an adoption refused for credentials", async () => {
      // Prepare
      let reloads = 0;
      const inner = failingBackend(new CredentialsRejectedError("token rotated"));
      const pooled: Backend = {
        ...inner,
        pooling: {
          key: "gateway:python3",
          refusal: (spec) => (spec.cwd ? "no cwd" : undefined),
          adopt: (ref) => inner.stop(ref).then(() => ref),
        },
      };
      const backend = refreshingCredentials(pooled, () => {
        reloads++;
      });
      const spec = { owner: "o", kernelId: "k", env: {} };

      // Act & assess
      assert.equal(backend.pooling?.key, "gateway:python3");
      assert.equal(backend.pooling?.refusal({ ...spec, cwd: "/w" }), "no cwd");
      await assert.rejects(backend.pooling.adopt(backend.parseRef({}), spec), CredentialsRejectedError);
      assert.equal(reloads, 1);
      assert.equal(refreshingCredentials(inner, () => {}).pooling, undefined);
    });
  });
});
