import { randomUUID } from "node:crypto";
import { ConditionFailedError, CorruptRecordError } from "../../../lib/errors.ts";
import type { KernelRecord, KernelStore } from "../../../lib/store/kernel-store.ts";

/** Every public method of the real store, so the fake cannot fall behind it unnoticed. */
type KernelStoreApi = Pick<KernelStore, keyof KernelStore>;

/**
 * `KernelStore` in memory, for unit tests: the same conditional writes (create only if absent,
 * updates only on the same incarnation, leases only when free) with the same outcomes — a lost
 * condition is `ConditionFailedError` where the real store throws it and silently nothing where
 * the real store swallows it. Records go in and out as copies, as they do through DynamoDB.
 */
export class FakeKernelStore implements KernelStoreApi {
  private readonly items = new Map<string, KernelRecord>();
  private readonly corrupt = new Set<string>();
  private readonly failures = new Map<keyof KernelStoreApi, Error>();

  async get(owner: string, kernelId: string): Promise<KernelRecord | undefined> {
    this.maybeFail("get");
    const id = key(owner, kernelId);
    if (this.corrupt.has(id)) throw unreadable(id);
    return copy(this.items.get(id));
  }

  async create(
    owner: string,
    kernelId: string,
    backend: KernelRecord["backend"],
    startingUntil: number,
  ): Promise<KernelRecord> {
    this.maybeFail("create");
    const id = key(owner, kernelId);
    if (this.items.has(id) || this.corrupt.has(id)) throw lost();
    const now = new Date().toISOString();
    const record: KernelRecord = {
      owner,
      kernelId,
      backend,
      state: "starting",
      incarnation: randomUUID(),
      createdAt: now,
      lastActivityAt: now,
      startingUntil,
    };
    this.items.set(id, copy(record));
    return record;
  }

  async claim(
    record: KernelRecord,
    backend: KernelRecord["backend"],
    startingUntil: number,
  ): Promise<KernelRecord> {
    this.maybeFail("claim");
    const current = this.sameIncarnation(record);
    if (!current) throw lost();
    const now = new Date().toISOString();
    return this.write({
      ...withoutLease(current),
      state: "starting",
      incarnation: randomUUID(),
      backend,
      startingUntil,
      createdAt: now,
      lastActivityAt: now,
    });
  }

  async complete(
    record: KernelRecord,
    ref: Record<string, unknown>,
    spec: NonNullable<KernelRecord["spec"]> = {},
  ): Promise<KernelRecord> {
    this.maybeFail("complete");
    const current = this.sameIncarnation(record);
    if (current?.state !== "starting") throw lost();
    const { startingUntil, ...rest } = current;
    return this.write({ ...rest, state: "ready", ref, spec, lastActivityAt: new Date().toISOString() });
  }

  async acquireLease(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseUntil: number,
    touch = true,
  ): Promise<KernelRecord> {
    this.maybeFail("acquireLease");
    const current = this.items.get(key(owner, kernelId));
    const free = current?.leaseUntil === undefined || current.leaseUntil < Date.now();
    if (current?.state !== "ready" || !free) throw lost();
    const activity = touch ? { lastActivityAt: new Date().toISOString() } : {};
    return this.write({ ...current, leaseId, leaseUntil, ...activity });
  }

  async touch(record: KernelRecord): Promise<void> {
    this.maybeFail("touch");
    const current = this.sameIncarnation(record);
    if (current) this.write({ ...current, lastActivityAt: new Date().toISOString() });
  }

  async releaseLease(owner: string, kernelId: string, leaseId: string, touch = true): Promise<void> {
    this.maybeFail("releaseLease");
    const current = this.items.get(key(owner, kernelId));
    if (current?.leaseId !== leaseId) return;
    const activity = touch ? { lastActivityAt: new Date().toISOString() } : {};
    this.write({ ...withoutLease(current), ...activity });
  }

  async markDead(record: KernelRecord): Promise<void> {
    this.maybeFail("markDead");
    const current = this.sameIncarnation(record);
    if (current) this.write({ ...withoutLease(current), state: "dead" });
  }

  async retire(record: KernelRecord): Promise<KernelRecord | undefined> {
    this.maybeFail("retire");
    const current = this.sameIncarnation(record);
    if (!current) return undefined;
    return this.write({ ...withoutLease(current), state: "dead", incarnation: randomUUID() });
  }

  async clearLease(record: KernelRecord): Promise<void> {
    this.maybeFail("clearLease");
    const current = this.sameIncarnation(record);
    if (current) this.write(withoutLease(current));
  }

  async delete(record: KernelRecord): Promise<void> {
    this.maybeFail("delete");
    if (this.sameIncarnation(record)) this.items.delete(key(record.owner, record.kernelId));
  }

  async countLive(owner: string): Promise<number> {
    this.maybeFail("countLive");
    return [...this.items.values()].filter((record) => record.owner === owner && record.state !== "dead")
      .length;
  }

  async deleteIdle(record: KernelRecord): Promise<boolean> {
    this.maybeFail("deleteIdle");
    const current = this.sameIncarnation(record);
    const free = current?.leaseUntil === undefined || current.leaseUntil < Date.now();
    if (!current || current.lastActivityAt !== record.lastActivityAt || !free) return false;
    this.items.delete(key(record.owner, record.kernelId));
    return true;
  }

  async *scanAll(onUnreadable?: (error: CorruptRecordError) => void): AsyncGenerator<KernelRecord> {
    this.maybeFail("scanAll");
    for (const id of this.corrupt) onUnreadable?.(unreadable(id));
    for (const record of [...this.items.values()]) yield copy(record);
  }

  /** Puts a record as it is, as another writer (an older deployment, another backend) would have. */
  put(record: KernelRecord): void {
    this.items.set(key(record.owner, record.kernelId), copy(record));
  }

  /** Changes fields of a stored record behind the service's back (time passing, a hand edit). */
  edit(owner: string, kernelId: string, change: Partial<KernelRecord>): void {
    const current = this.items.get(key(owner, kernelId));
    if (!current) throw new Error(`no record ${owner}/${kernelId} to edit`);
    this.items.set(key(owner, kernelId), copy({ ...current, ...change }));
  }

  /** Makes an item unreadable, like one of a newer schema: reads of it fail, scans skip it. */
  spoil(owner: string, kernelId: string): void {
    this.items.delete(key(owner, kernelId));
    this.corrupt.add(key(owner, kernelId));
  }

  /** Makes the next call of `method` throw `error` (DynamoDB unreachable, throttled, …). */
  failNext(method: keyof KernelStoreApi, error: Error): void {
    this.failures.set(method, error);
  }

  /** The stored record, read without going through the store's API (for assertions). */
  peek(owner: string, kernelId: string): KernelRecord | undefined {
    return copy(this.items.get(key(owner, kernelId)));
  }

  /** Every stored record (for assertions). */
  records(): KernelRecord[] {
    return [...this.items.values()].map((record) => structuredClone(record));
  }

  private sameIncarnation(record: KernelRecord): KernelRecord | undefined {
    const current = this.items.get(key(record.owner, record.kernelId));
    return current?.incarnation === record.incarnation ? current : undefined;
  }

  private write(record: KernelRecord): KernelRecord {
    this.items.set(key(record.owner, record.kernelId), copy(record));
    return copy(record);
  }

  private maybeFail(method: keyof KernelStoreApi): void {
    const error = this.failures.get(method);
    if (!error) return;
    this.failures.delete(method);
    throw error;
  }
}

/** The record with no run lease, as `REMOVE leaseId, leaseUntil` leaves it. */
function withoutLease(record: KernelRecord): KernelRecord {
  const { leaseId, leaseUntil, ...rest } = record;
  return rest;
}

function key(owner: string, kernelId: string): string {
  return JSON.stringify([owner, kernelId]);
}

function copy<T extends KernelRecord | undefined>(record: T): T {
  return record === undefined ? record : structuredClone(record);
}

function lost(): ConditionFailedError {
  return new ConditionFailedError("conditional write lost");
}

function unreadable(id: string): CorruptRecordError {
  return new CorruptRecordError(`kernel record ${id} is malformed`);
}
