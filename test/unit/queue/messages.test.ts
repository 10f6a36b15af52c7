import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { QueueMessageSchema } from "../../../lib/core/queue-message.ts";
import { messageGroupOf } from "../../../lib/queue/messages.ts";

describe("queue messages", () => {
  it("accepts the three actions of the contract", () => {
    for (const message of [
      { action: "start", owner: "alice", kernelId: "k1", cwd: "/data", env: { MODE: "x" } },
      { action: "run", owner: "alice", kernelId: "k1", runId: "r-1", code: "1 + 1", timeoutMs: 60_000 },
      { action: "run", owner: "alice", kernelId: "k1", code: "1 + 1" },
      { action: "stop", owner: "alice", kernelId: "k1" },
    ]) {
      assert.equal(QueueMessageSchema.safeParse(message).success, true, JSON.stringify(message));
    }
  });

  it("refuses what a typo or a hostile producer could send", () => {
    for (const message of [
      { action: "restart", owner: "alice", kernelId: "k1" },
      { action: "run", owner: "alice", kernelId: "k1" },
      { action: "run", owner: "", kernelId: "k1", code: "1" },
      { action: "run", owner: "alice", kernelId: "../etc", code: "1" },
      { action: "run", owner: "alice", kernelId: "k1", code: "1", timeoutMs: -5 },
      { action: "stop", owner: "alice", kernelId: "k1", force: true },
      { action: "start", owner: "alice", kernelId: "k1", env: { AWS_SECRET_ACCESS_KEY: "x" } },
      { action: "start", owner: "alice", kernelId: "k1", cwd: "relative" },
    ]) {
      assert.equal(QueueMessageSchema.safeParse(message).success, false, JSON.stringify(message));
    }
  });

  it("puts one kernel's messages in one group, and no two kernels or owners together", () => {
    const group = messageGroupOf("alice", "k1");
    assert.equal(group, messageGroupOf("alice", "k1"));
    assert.notEqual(group, messageGroupOf("alice", "k2"));
    assert.notEqual(group, messageGroupOf("bob", "k1"));
    assert.notEqual(messageGroupOf("a#b", "c"), messageGroupOf("a", "b#c"));
    assert.match(group, /^[0-9a-f]{64}$/);
  });
});
