import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { KeptConnections } from "../../lib/kept-connections.ts";

/** A connection double: open until disposed, answering its probe as told. */
class Conn {
  disposed = false;
  probes = 0;
  constructor(
    readonly name: string,
    public answers = true,
  ) {}
}

function kept(options: { maxIdleMs?: number; maxEntries?: number } = {}) {
  return new KeptConnections<Conn>({
    maxIdleMs: options.maxIdleMs ?? 60_000,
    maxEntries: options.maxEntries ?? 8,
    isOpen: (c) => !c.disposed,
    probe: async (c) => {
      c.probes++;
      return c.answers;
    },
    dispose: (c) => {
      c.disposed = true;
    },
  });
}

describe("KeptConnections", () => {
  it("lends a kept connection to one use at a time", async () => {
    const cache = kept();
    const a = new Conn("a");
    cache.keep("k", a);

    assert.equal(await cache.take("k"), a);
    assert.equal(await cache.take("k"), undefined, "lent already");
    assert.equal(a.disposed, false);
  });

  it("lends back-to-back without a probe, and probes one kept for a while", async () => {
    const cache = kept();
    const a = new Conn("a");
    cache.keep("k", a);
    assert.equal(await cache.take("k"), a);
    assert.equal(a.probes, 0);

    cache.keep("k", a);
    await sleep(1_100);
    assert.equal(await cache.take("k"), a);
    assert.equal(a.probes, 1);
  });

  it("disposes a connection that fails its probe, and lends nothing", async () => {
    const cache = kept();
    const a = new Conn("a", false);
    cache.keep("k", a);
    await sleep(1_100);

    assert.equal(await cache.take("k"), undefined);
    assert.equal(a.disposed, true);
  });

  it("never lends across scopes (a rotated token), nor past the idle limit", async () => {
    const cache = kept({ maxIdleMs: 50 });
    const a = new Conn("a");
    const b = new Conn("b");
    cache.keep("k", a, "old token");
    assert.equal(await cache.take("k", "new token"), undefined);
    assert.equal(a.disposed, true);

    cache.keep("k", b);
    await sleep(100);
    assert.equal(await cache.take("k"), undefined);
    assert.equal(b.disposed, true, "closed by its idle timer");
  });

  it("keeps nothing with a zero idle limit, one per key, and at most maxEntries", async () => {
    const none = kept({ maxIdleMs: 0 });
    const a = new Conn("a");
    none.keep("k", a);
    assert.equal(a.disposed, true);

    const cache = kept({ maxEntries: 2 });
    const [x, y, z, w] = [new Conn("x"), new Conn("y"), new Conn("z"), new Conn("w")];
    cache.keep("k", x);
    cache.keep("k", y);
    assert.equal(x.disposed, true, "a second connection for a key replaces the first");
    cache.keep("l", z);
    cache.keep("m", w);
    assert.equal(y.disposed, true, "the oldest goes past maxEntries");
    assert.equal(await cache.take("m"), w);
  });

  it("drops a kernel's connection, and counts uses under way", async () => {
    const cache = kept();
    const a = new Conn("a");
    cache.keep("k", a);
    cache.drop("k");
    assert.equal(a.disposed, true);

    assert.equal(cache.inUse("k"), false);
    const done = cache.using("k");
    const other = cache.using("k");
    assert.equal(cache.inUse("k"), true);
    done();
    done();
    assert.equal(cache.inUse("k"), true, "one use is still under way");
    other();
    assert.equal(cache.inUse("k"), false);
  });
});
