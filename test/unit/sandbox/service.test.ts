import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NotFoundError } from "../../../lib/errors.ts";
import { SandboxService } from "../../../lib/sandbox/service.ts";
import { FakeBackend } from "../../support/fakes/backend.ts";
import { FakeKernelStore } from "../../support/fakes/kernel-store.ts";
import { testSettings } from "./harness.ts";

describe("SandboxService", { timeout: 10_000 }, () => {
  describe("run", () => {
    it("connects with the ref the start remembered while the lease is taken (one ref cache for all rooms)", async () => {
      // Prepare
      const backend = new FakeBackend();
      const service = new SandboxService(new FakeKernelStore(), backend, testSettings());
      await service.start("alice", { kernelId: "k" });

      // Act
      const result = await service.run("alice", "k", "1");

      // Assess
      assert.equal(result.status, "ok");
      assert.ok(backend.runningOf("alice", "k")?.options[0]?.admitted, "the run did not overlap its lease");
    });
  });

  describe("stop", () => {
    it("makes the kernel unknown to get and run alike", async () => {
      // Prepare
      const service = new SandboxService(new FakeKernelStore(), new FakeBackend(), testSettings());
      await service.start("alice", { kernelId: "k" });
      await service.run("alice", "k", "1");

      // Act
      await service.stop("alice", "k");

      // Assess
      await assert.rejects(service.get("alice", "k"), NotFoundError);
      await assert.rejects(service.run("alice", "k", "1"), NotFoundError);
    });
  });

  describe("stopAll", () => {
    it("stops what this service started and says how many", async () => {
      // Prepare
      const backend = new FakeBackend();
      const service = new SandboxService(new FakeKernelStore(), backend, testSettings());
      await service.start("alice", { kernelId: "a" });
      await service.start("alice", { kernelId: "b" });

      // Act
      const stopped = await service.stopAll();

      // Assess
      assert.equal(stopped, 2);
      assert.equal(backend.running().length, 0);
    });
  });
});
