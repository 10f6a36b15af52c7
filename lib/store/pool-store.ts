import { randomUUID } from "node:crypto";
import { DeleteCommand, type DynamoDBDocumentClient, PutCommand, paginateQuery } from "@aws-sdk/lib-dynamodb";
import * as z from "zod";
import { ConditionFailedError, CorruptRecordError } from "../errors.ts";
import { logger } from "../logger.ts";
import { expiresIn } from "./dynamodb.ts";
import { storeCall } from "./errors.ts";

const PooledKernelSchema = z.object({
  /** Which pool: a backend and what its kernels are made from (kernelspec, image, interpreter). */
  pool: z.string().min(1),
  /** Unique and sortable by age: the start time, then a UUID. */
  slot: z.string().min(1),
  backend: z.enum(["local", "gateway", "cluster"]),
  ref: z.record(z.string(), z.unknown()),
  /** Epoch ms the kernel was started at, for retiring old ones. */
  startedAt: z.number(),
});

/** A kernel started ahead of demand for no caller yet, as stored. */
export type PooledKernel = z.infer<typeof PooledKernelSchema>;

const POOL_PREFIX = "POOL#";
const SLOT_PREFIX = "POOLED#";

/** How many of the oldest pool items one claim looks at before calling the pool empty. */
const CLAIM_CANDIDATES = 8;

/**
 * Warm-pool items in the one table: a partition per pool, no owner anywhere, so no caller's query
 * can ever reach one. An item is taken by deleting it under a condition: of two concurrent claims
 * only one gets a given kernel. The TTL is a backstop only (the reaper retires old kernels and
 * their items first, long before): should it drop an item, its kernel is stopped by the local
 * backend's orphan sweep, or culled as idle by the gateway (`cull_idle_timeout`) or the controller.
 */
export class PoolStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Records a kernel started for the pool; it may be claimed from now on. */
  async add(
    pool: string,
    backend: PooledKernel["backend"],
    ref: Record<string, unknown>,
    ttlSeconds: number,
  ): Promise<PooledKernel> {
    const startedAt = Date.now();
    const item: PooledKernel = {
      pool,
      slot: `${String(startedAt).padStart(15, "0")}#${randomUUID()}`,
      backend,
      ref,
      startedAt,
    };
    await storeCall(() =>
      this.client.send(
        new PutCommand({
          TableName: this.table,
          Item: { ...key(item), ...item, expiresAt: expiresIn(ttlSeconds) },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      ),
    );
    return item;
  }

  /**
   * Takes the oldest kernel of the pool, or undefined when it is empty. A kernel another claim took
   * first is skipped; each item goes to exactly one claimer.
   */
  async claim(pool: string): Promise<PooledKernel | undefined> {
    for (const item of await this.list(pool, CLAIM_CANDIDATES)) {
      if (await this.remove(item)) return item;
    }
    return undefined;
  }

  /** The pool's kernels, oldest first; `limit` stops after that many. */
  async list(pool: string, limit = Number.POSITIVE_INFINITY): Promise<PooledKernel[]> {
    const items: PooledKernel[] = [];
    const pages = paginateQuery(
      { client: this.client, pageSize: Math.min(100, limit) },
      {
        TableName: this.table,
        KeyConditionExpression: "pk = :pk AND begins_with(sk, :slot)",
        ExpressionAttributeValues: { ":pk": `${POOL_PREFIX}${pool}`, ":slot": SLOT_PREFIX },
        ConsistentRead: true,
      },
    )[Symbol.asyncIterator]();
    while (items.length < limit) {
      const page = await storeCall(() => pages.next());
      if (page.done) break;
      for (const raw of page.value.Items ?? []) {
        const parsed = PooledKernelSchema.safeParse(raw);
        if (parsed.success) items.push(parsed.data);
        else
          logger.error("unreadable pool item skipped", {
            error: new CorruptRecordError(parsed.error.message),
          });
      }
    }
    return items.slice(0, limit);
  }

  /** Deletes the item if it is still there: true when this call removed it (the kernel is the caller's to use or stop). */
  async remove(item: PooledKernel): Promise<boolean> {
    try {
      await storeCall(() =>
        this.client.send(
          new DeleteCommand({
            TableName: this.table,
            Key: key(item),
            ConditionExpression: "attribute_exists(pk)",
          }),
        ),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionFailedError) return false;
      throw error;
    }
  }
}

function key(item: Pick<PooledKernel, "pool" | "slot">) {
  return { pk: `${POOL_PREFIX}${item.pool}`, sk: `${SLOT_PREFIX}${item.slot}` };
}
