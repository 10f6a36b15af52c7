import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateScan,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import { z } from "zod";
import { ConditionFailedError, StoreUnavailableError } from "../errors.ts";
import { translateStoreError } from "./errors.ts";

const KernelRecordSchema = z.object({
  owner: z.string(),
  kernelId: z.string(),
  backend: z.enum(["local", "gateway", "cluster"]),
  /** A start holds `starting`; `dead` waits for a start to revive it. */
  state: z.enum(["starting", "ready", "dead"]),
  /** Bumped by every start or restart, so a late writer cannot overwrite a newer kernel. */
  version: z.number().int(),
  ref: z.record(z.string(), z.unknown()).optional(),
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
    const out = await this.send(() =>
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
      version: 1,
      createdAt: now,
      lastActivityAt: now,
      startingUntil,
    };
    await this.send(() =>
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

  /** Takes over a dead kernel or a stalled start: back to `starting` under a new version. */
  async claim(record: KernelRecord, backend: BackendName, startingUntil: number): Promise<KernelRecord> {
    const out = await this.send(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression:
            "SET #state = :starting, version = :next, backend = :backend, startingUntil = :until, createdAt = :now, lastActivityAt = :now, expiresAt = :exp REMOVE leaseId, leaseUntil",
          ConditionExpression: "version = :version",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: {
            ":starting": "starting",
            ":next": record.version + 1,
            ":version": record.version,
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
  async complete(record: KernelRecord, ref: Record<string, unknown>): Promise<KernelRecord> {
    const out = await this.send(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression:
            "SET #state = :ready, #ref = :ref, lastActivityAt = :now, expiresAt = :exp REMOVE startingUntil",
          ConditionExpression: "version = :version AND #state = :starting",
          ExpressionAttributeNames: { "#state": "state", "#ref": "ref" },
          ExpressionAttributeValues: {
            ":ready": "ready",
            ":starting": "starting",
            ":ref": ref,
            ":version": record.version,
            ":now": new Date().toISOString(),
            ":exp": this.expiry(),
          },
          ReturnValues: "ALL_NEW",
        }),
      ),
    );
    return toRecord(out.Attributes ?? {});
  }

  /** Removes a start that failed, unless someone else has taken the record over. */
  async abandon(record: KernelRecord): Promise<void> {
    await this.send(() =>
      this.client.send(
        new DeleteCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          ConditionExpression: "version = :version",
          ExpressionAttributeValues: { ":version": record.version },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /**
   * Takes the run lease of a ready kernel and touches `lastActivityAt` in the same write, returning
   * the record. Fails when there is no such ready kernel or another run holds a live lease.
   */
  async acquireLease(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseUntil: number,
  ): Promise<KernelRecord> {
    const out = await this.send(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(owner, kernelId),
          UpdateExpression:
            "SET leaseId = :lease, leaseUntil = :until, lastActivityAt = :now, expiresAt = :exp",
          ConditionExpression:
            "attribute_exists(pk) AND #state = :ready AND (attribute_not_exists(leaseUntil) OR leaseUntil < :nowMs)",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: {
            ":lease": leaseId,
            ":until": leaseUntil,
            ":ready": "ready",
            ":now": new Date().toISOString(),
            ":nowMs": Date.now(),
            ":exp": this.expiry(),
          },
          ReturnValues: "ALL_NEW",
        }),
      ),
    );
    return toRecord(out.Attributes ?? {});
  }

  /** Gives the lease back; a lease already taken over or a record already gone is fine. */
  async releaseLease(owner: string, kernelId: string, leaseId: string): Promise<void> {
    await this.send(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(owner, kernelId),
          UpdateExpression: "SET lastActivityAt = :now REMOVE leaseId, leaseUntil",
          ConditionExpression: "leaseId = :lease",
          ExpressionAttributeValues: { ":lease": leaseId, ":now": new Date().toISOString() },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /** Marks the kernel of this version dead (a newer version is left alone). */
  async markDead(record: KernelRecord): Promise<void> {
    await this.send(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          UpdateExpression: "SET #state = :dead REMOVE leaseId, leaseUntil",
          ConditionExpression: "version = :version",
          ExpressionAttributeNames: { "#state": "state" },
          ExpressionAttributeValues: { ":dead": "dead", ":version": record.version },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /** Deletes the record of exactly this version, so a concurrent restart's record survives. */
  async delete(record: KernelRecord): Promise<void> {
    await this.send(() =>
      this.client.send(
        new DeleteCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId),
          ConditionExpression: "version = :version",
          ExpressionAttributeValues: { ":version": record.version },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /** Every kernel record of every owner: for the dev server's recovery and the reaper, never per request. */
  async *scanAll(): AsyncGenerator<KernelRecord> {
    const pages = paginateScan(
      { client: this.client },
      {
        TableName: this.table,
        ConsistentRead: true,
        FilterExpression: "begins_with(sk, :kernel)",
        ExpressionAttributeValues: { ":kernel": KERNEL_PREFIX },
      },
    );
    try {
      for await (const page of pages) {
        for (const item of page.Items ?? []) yield toRecord(item);
      }
    } catch (error) {
      throw translateStoreError(error);
    }
  }

  private expiry(): number {
    return Math.floor(Date.now() / 1000) + this.ttlSeconds;
  }

  private async send<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw translateStoreError(error);
    }
  }
}

function key(owner: string, kernelId: string) {
  return { pk: `OWNER#${owner}`, sk: `${KERNEL_PREFIX}${kernelId}` };
}

function ignoreConditionFailed(error: unknown): void {
  if (!(error instanceof ConditionFailedError)) throw error;
}

/** Items are checked on the way in: a hand-edited or half-migrated item must not crash a handler. */
function toRecord(item: Record<string, unknown>): KernelRecord {
  const parsed = KernelRecordSchema.safeParse(item);
  if (!parsed.success)
    throw new StoreUnavailableError("a kernel record in the store is malformed", { cause: parsed.error });
  return parsed.data;
}
