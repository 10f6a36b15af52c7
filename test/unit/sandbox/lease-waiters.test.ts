import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LeaseWaiters } from "../../../lib/sandbox/lease-waiters.ts";

/** Whether `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

describe("LeaseWaiters", () => {
  it("wakes the oldest waiter of a kernel at once when a run here releases the lease", async () => {
    const waiters = new LeaseWaiters();
    const first = waiters.join("k");
    const second = waiters.join("k");
    const firstPause = first.pause(10_000);
    const secondPause = second.pause(10_000);

    waiters.released("k");

    assert.equal(await settlesWithin(firstPause, 200), true, "the oldest tries again at once");
    assert.equal(await settlesWithin(secondPause, 200), false, "the next one keeps sleeping");
    first.leave(true);
    waiters.released("k");
    assert.equal(await settlesWithin(secondPause, 200), true, "its turn comes with the next release");
    second.leave(true);
  });

  it("hands the turn on at once when the oldest gives up without the lease", async () => {
    const waiters = new LeaseWaiters();
    const first = waiters.join("k");
    const second = waiters.join("k");
    const secondPause = second.pause(10_000);

    first.leave(false);

    assert.equal(await settlesWithin(secondPause, 200), true);
    second.leave(true);
  });

  it("lets only the oldest poll at its own pace; the others look again after a second at most", async () => {
    const waiters = new LeaseWaiters();
    const first = waiters.join("k");
    const second = waiters.join("k");

    assert.equal(await settlesWithin(first.pause(20), 500), true, "the oldest polls");
    assert.equal(await settlesWithin(second.pause(20), 500), false, "the next does not");
    assert.equal(await settlesWithin(second.pause(20), 1_500), true, "but is not forgotten");
    first.leave(true);
    second.leave(true);
  });

  it("does not poll for a lease a run of this process holds, and tries as soon as it is released here", async () => {
    const waiters = new LeaseWaiters();
    waiters.held("k", Date.now() + 60_000);
    const only = waiters.join("k");
    const pause = only.pause(20);

    assert.equal(await settlesWithin(pause, 300), false, "no poll while the holder is here");
    waiters.released("k");
    assert.equal(await settlesWithin(pause, 200), true);
    assert.equal(waiters.heldHere("k"), false);
    only.leave(true);
  });

  it("has newcomers queue behind a lease held here or runs already waiting, never overtake them", () => {
    const waiters = new LeaseWaiters();
    assert.equal(waiters.queueFirst("k"), false);
    waiters.held("k", Date.now() + 60_000);
    assert.equal(waiters.queueFirst("k"), true);
    const waiting = waiters.join("k");
    waiters.released("k");
    assert.equal(waiters.queueFirst("k"), true, "one waits already");
    waiting.leave(true);
    assert.equal(waiters.queueFirst("k"), false);
  });

  it("forgets a hold once its lease has lapsed", async () => {
    const waiters = new LeaseWaiters();
    waiters.held("k", Date.now() + 50);
    assert.equal(waiters.heldHere("k"), true);
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.equal(waiters.heldHere("k"), false);
  });

  it("keeps kernels apart", async () => {
    const waiters = new LeaseWaiters();
    const a = waiters.join("a");
    const b = waiters.join("b");
    const bPause = b.pause(10_000);

    waiters.released("a");

    assert.equal(await settlesWithin(bPause, 200), false);
    waiters.released("b");
    assert.equal(await settlesWithin(bPause, 200), true);
    a.leave(false);
    b.leave(false);
  });
});
