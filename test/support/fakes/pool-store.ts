import { randomUUID } from "node:crypto";
import type { PooledKernel, PoolStore } from "../../../lib/store/pool-store.ts";

/** Every public method of the real store, so the fake cannot fall behind it unnoticed. */
type PoolStoreApi = Pick<PoolStore, keyof PoolStore>;

/**
 * `PoolStore` in memory, for unit tests: items listed oldest first, and a claim or removal that
 * only one caller wins, as the real store's conditional delete makes it.
 */
export class FakePoolStore implements PoolStoreApi {
  private readonly items = new Map<string, PooledKernel>();
  private sequence = 0;

  async add(
    pool: string,
    backend: PooledKernel["backend"],
    ref: Record<string, unknown>,
    _ttlSeconds: number,
  ): Promise<PooledKernel> {
    const startedAt = Date.now();
    const slot = `${String(startedAt).padStart(15, "0")}#${String(this.sequence++).padStart(6, "0")}#${randomUUID()}`;
    const item: PooledKernel = { pool, slot, backend, ref: structuredClone(ref), startedAt };
    this.items.set(slot, item);
    return structuredClone(item);
  }

  async claim(pool: string): Promise<PooledKernel | undefined> {
    for (const item of await this.list(pool)) if (await this.remove(item)) return item;
    return undefined;
  }

  async list(pool: string, limit = Number.POSITIVE_INFINITY): Promise<PooledKernel[]> {
    return [...this.items.values()]
      .filter((item) => item.pool === pool)
      .sort((a, b) => a.slot.localeCompare(b.slot))
      .slice(0, limit)
      .map((item) => structuredClone(item));
  }

  async remove(item: PooledKernel): Promise<boolean> {
    return this.items.delete(item.slot);
  }

  /** Makes an item look started `ms` ago, for the reaper's age limit. */
  age(slot: string, ms: number): void {
    const item = this.items.get(slot);
    if (item) item.startedAt -= ms;
  }
}
