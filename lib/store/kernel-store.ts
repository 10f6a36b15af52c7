import { randomUUID } from "node:crypto";
import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  paginateScan,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import * as z from "zod";
import { ConditionFailedError, CorruptRecordError } from "../errors.ts";
import { logger } from "../logger.ts";
import { expiresIn } from "./dynamodb.ts";
import { ignoreConditionFailed, storeCall } from "./errors.ts";

const KernelRecordSchema = z.object({
  owner: z.string(),
  kernelId: z.string(),
  backend: z.enum(["local", "gateway", "cluster"]),
  /** A start holds `starting`; `dead` waits for a start to revive it. */
  state: z.enum(["starting", "ready", "dead"]),
  /**
   * New (a UUID) for every start or restart, never reused even after a delete, so a late writer
   * or a remembered ref can never be taken for a newer kernel under the same id.
   */
  incarnation: z.string().min(1),
  ref: z.record(z.string(), z.unknown()).optional(),
  /** What the caller started it with, so a kernel that must be restarted comes back the same. */
  spec: z.object({ cwd: z.string().optional(), env: z.record(z.string(), z.string()).optional() }).optional(),
  createdAt: z.string(),
  lastActivityAt: z.string(),
  /** Epoch ms after which an unfinished start may be taken over. */
  startingUntil: z.number().optional(),
  leaseId: z.string().optional(),
  /** Epoch ms after which a run's lease is stale (its invocation died). */
  leaseUntil: z.number().optional(),
});

/** One caller's kernel as stored: where it lives (`ref`) and who may use it now (`lease*`). */
export type KernelRecord = z.infer<typeof KernelRecordSchema>;

/** Lifecycle state of a record. */
export type RecordState = KernelRecord["state"];

type BackendName = KernelRecord["backend"];

const KERNEL_PREFIX = "KERNEL#";

/**
 * Kernel records in the one table, keyed by owner + kernelId so no query can cross callers.
 * Every state change is a conditional write; losing one raises `ConditionFailedError`.
 */
export class KernelStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly ttlSeconds: number,
  ) {}

  async get(owner: string, kernelId: string): Promise<KernelRecord | undefined> {
    const out = await storeCall(() =>
      this.client.send(
        new GetCommand({ TableName: this.table, Key: key(owner, kernelId), ConsistentRead: true }),
      ),
    );
    return out.Item ? toRecord(out.Item) : undefined;
  }

  /** Creates a `starting` record; fails if the caller already has one by that id. */
  async create(
    owner: string,
    kernelId: string,
    backend: BackendName,
    startingUntil: number,
  ): Promise<KernelRecord> {
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
    await storeCall(() =>
      this.client.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...key(owner, kernelId), ...record, expiresAt: this.expiry() },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      ),
    );
    return record;
  }

  /** Takes over a dead kernel or a stalled start: back to `starting` under a new incarnation. */
  async claim(record: KernelRecord, backend: BackendName, startingUntil: number): Promise<KernelRecord> {
    const out = await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression:
            "SET #state = :starting, incarnation = :next, backend = :backend, startingUntil = :until, createdAt = :now, lastActivityAt = :now, expiresAt = :exp REMOVE leaseId, leaseUntil",
          ConditionExpression: "incarnation = :incarnation",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: {
            ":starting": "starting",
            ":next": randomUUID(),
            ":incarnation": record.incarnation,
            ":backend": backend,
            ":until": startingUntil,
            ":now": new Date().toISOString(),
            ":exp": this.expiry(),
          },
          ReturnValues: "ALL_NEW",
        }),
      ),
    );
    return toRecord(out.Attributes ?? {});
  }

  /** Records the started kernel; fails if someone else took the record over meanwhile. */
  async complete(
    record: KernelRecord,
    ref: Record<string, unknown>,
    spec: NonNullable<KernelRecord["spec"]> = {},
  ): Promise<KernelRecord> {
    const out = await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression:
            "SET #state = :ready, #ref = :ref, spec = :spec, lastActivityAt = :now, expiresAt = :exp REMOVE startingUntil",
          ConditionExpression: "incarnation = :incarnation AND #state = :starting",
          ExpressionAttributeNames: { "#state": "state", "#ref": "ref" },
          ExpressionAttributeValues: {
            ":ready": "ready",
            ":starting": "starting",
            ":ref": ref,
            ":spec": spec,
            ":incarnation": record.incarnation,
            ":now": new Date().toISOString(),
            ":exp": this.expiry(),
          },
          ReturnValues: "ALL_NEW",
        }),
      ),
    );
    return toRecord(out.Attributes ?? {});
  }

  /**
   * Takes the run lease of a ready kernel and touches `lastActivityAt` in the same write, returning
   * the record. Fails when there is no such ready kernel or another run holds a live lease.
   * `touch: false` leaves the activity alone: the reaper's own work must not keep a kernel alive.
   */
  async acquireLease(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseUntil: number,
    touch = true,
  ): Promise<KernelRecord> {
    const activity = touch ? ", lastActivityAt = :now, expiresAt = :exp" : "";
    const out = await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(owner, kernelId),
          UpdateExpression: `SET leaseId = :lease, leaseUntil = :until${activity}`,
          ConditionExpression:
            "attribute_exists(pk) AND #state = :ready AND (attribute_not_exists(leaseUntil) OR leaseUntil < :nowMs)",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: {
            ":lease": leaseId,
            ":until": leaseUntil,
            ":ready": "ready",
            ":nowMs": Date.now(),
            ...(touch ? { ":now": new Date().toISOString(), ":exp": this.expiry() } : {}),
          },
          ReturnValues: "ALL_NEW",
        }),
      ),
    );
    return toRecord(out.Attributes ?? {});
  }

  /** Records activity on this incarnation without taking its lease (a run was queued for it). */
  async touch(record: KernelRecord): Promise<void> {
    await this.updateIncarnation(record, "SET lastActivityAt = :now, expiresAt = :exp", {
      ":now": new Date().toISOString(),
      ":exp": this.expiry(),
    });
  }

  /**
   * Gives the lease back, touching `lastActivityAt` unless `touch` is false; a lease already taken
   * over or a record already gone is fine.
   */
  async releaseLease(owner: string, kernelId: string, leaseId: string, touch = true): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(owner, kernelId),
          UpdateExpression: touch
            ? "SET lastActivityAt = :now REMOVE leaseId, leaseUntil"
            : "REMOVE leaseId, leaseUntil",
          ConditionExpression: "leaseId = :lease",
          ExpressionAttributeValues: {
            ":lease": leaseId,
            ...(touch ? { ":now": new Date().toISOString() } : {}),
          },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /** Marks this incarnation dead (a newer kernel under the same id is left alone). */
  async markDead(record: KernelRecord): Promise<void> {
    await this.updateIncarnation(
      record,
      "SET #state = :dead REMOVE leaseId, leaseUntil",
      { ":dead": "dead" },
      { "#state": "state" },
    );
  }

  /**
   * Retires this incarnation before its kernel is stopped: dead, under a new incarnation, lease
   * dropped. A run or request dying under the stop then reads a changed incarnation and says
   * "stopped", not "died". Returns the retired record, or undefined when the record was replaced or
   * deleted meanwhile (the newer state wins).
   */
  async retire(record: KernelRecord): Promise<KernelRecord | undefined> {
    try {
      const { Attributes } = await storeCall(() =>
        this.client.send(
          new UpdateCommand({
            TableName: this.table,
            Key: key(record.owner, record.kernelId),
            UpdateExpression: "SET #state = :dead, incarnation = :next REMOVE leaseId, leaseUntil",
            ConditionExpression: "incarnation = :incarnation",
            ExpressionAttributeNames: { "#state": "state" },
            ExpressionAttributeValues: {
              ":dead": "dead",
              ":next": randomUUID(),
              ":incarnation": record.incarnation,
            },
            ReturnValues: "ALL_NEW",
          }),
        ),
      );
      return Attributes ? toRecord(Attributes) : undefined;
    } catch (error) {
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }

  /** Drops the lease of this incarnation: its holder is known gone (the dev server after a crash). */
  async clearLease(record: KernelRecord): Promise<void> {
    await this.updateIncarnation(record, "REMOVE leaseId, leaseUntil");
  }

  /**
   * Deletes the record of exactly this incarnation, so a concurrent restart's record survives; also
   * how a failed start is abandoned.
   */
  async delete(record: KernelRecord): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new DeleteCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          ConditionExpression: "incarnation = :incarnation",
          ExpressionAttributeValues: { ":incarnation": record.incarnation },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /** How many live (not dead) kernels the caller has, for the per-caller limit. */
  async countLive(owner: string): Promise<number> {
    let count = 0;
    const pages = paginateQuery(
      { client: this.client },
      {
        TableName: this.table,
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :kernel)",
        FilterExpression: "#state <> :dead",
        ExpressionAttributeNames: { "#state": "state" },
        ExpressionAttributeValues: { ":pk": `OWNER#${owner}`, ":kernel": KERNEL_PREFIX, ":dead": "dead" },
        Select: "COUNT",
        ConsistentRead: true,
      },
    )[Symbol.asyncIterator]();
    for (;;) {
      const page = await storeCall(() => pages.next());
      if (page.done) return count;
      count += page.value.Count ?? 0;
    }
  }

  /**
   * Deletes a kernel the reaper found idle, only if it still is: same incarnation, no run since
   * (`lastActivityAt` unchanged) and no live lease. False when a run got there first.
   */
  async deleteIdle(record: KernelRecord): Promise<boolean> {
    try {
      await storeCall(() =>
        this.client.send(
          new DeleteCommand({
            TableName: this.table,
            Key: key(record.owner, record.kernelId),
            ConditionExpression:
              "incarnation = :incarnation AND lastActivityAt = :last AND (attribute_not_exists(leaseUntil) OR leaseUntil < :nowMs)",
            ExpressionAttributeValues: {
              ":incarnation": record.incarnation,
              ":last": record.lastActivityAt,
              ":nowMs": Date.now(),
            },
          }),
        ),
      );
      return true;
    } catch (error) {
      ignoreConditionFailed(error);
      return false;
    }
  }

  /** Every kernel record of every owner: for the dev server's recovery and the reaper, never per request. */
  async *scanAll(onUnreadable?: (error: CorruptRecordError) => void): AsyncGenerator<KernelRecord> {
    const pages = paginateScan(
      { client: this.client },
      {
        TableName: this.table,
        ConsistentRead: true,
        FilterExpression: "begins_with(sk, :kernel)",
        ExpressionAttributeValues: { ":kernel": KERNEL_PREFIX },
      },
    )[Symbol.asyncIterator]();
    for (;;) {
      const page = await storeCall(() => pages.next());
      if (page.done) return;
      for (const item of page.value.Items ?? []) {
        let record: KernelRecord;
        try {
          record = toRecord(item);
        } catch (error) {
          // One bad item must not stop every scan (the reaper would never cull again).
          if (!(error instanceof CorruptRecordError)) throw error;
          logger.error("unreadable kernel record skipped", { error });
          onUnreadable?.(error);
          continue;
        }
        yield record;
      }
    }
  }

  /**
   * Applies `update` to exactly this incarnation; if the record was replaced or deleted meanwhile,
   * the newer state wins and nothing is written.
   */
  private async updateIncarnation(
    record: KernelRecord,
    update: string,
    values: Record<string, unknown> = {},
    names?: Record<string, string>,
  ): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression: update,
          ConditionExpression: "incarnation = :incarnation",
          ...(names ? { ExpressionAttributeNames: names } : {}),
          ExpressionAttributeValues: { ...values, ":incarnation": record.incarnation },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  private expiry(): number {
    return expiresIn(this.ttlSeconds);
  }
}

function key(owner: string, kernelId: string) {
  return { pk: `OWNER#${owner}`, sk: `${KERNEL_PREFIX}${kernelId}` };
}

/** Items are checked on the way in: a hand-edited or half-migrated item must not crash a handler. */
function toRecord(item: Record<string, unknown>): KernelRecord {
  const parsed = KernelRecordSchema.safeParse(item);
  if (!parsed.success) {
    throw new CorruptRecordError(`kernel record ${String(item.pk)}/${String(item.sk)} is malformed`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
