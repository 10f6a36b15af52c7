import {
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateScan,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";
import * as z from "zod";
import { type RunResult, RunResultSchema } from "../core/run-result.ts";
import { QueuedRunStatusSchema, RunFailureSchema } from "../core/run-view.ts";
import { ConditionFailedError, CorruptRecordError, ItemTooLargeError } from "../errors.ts";
import { expiresIn } from "./dynamodb.ts";
import { ignoreConditionFailed, storeCall } from "./errors.ts";

const RunRecordSchema = z.object({
  owner: z.string(),
  kernelId: z.string(),
  runId: z.string(),
  status: QueuedRunStatusSchema,
  /** SHA-256 of the code: tells a retried POST (same code) from a reused id (other code). */
  codeSha256: z.string(),
  createdAt: z.string(),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
  /** The consumer invocation that holds the run; only it may finish or release it. */
  attempt: z.string().optional(),
  /** Epoch ms by which the holding invocation has ended, whatever happened to it. */
  runningUntil: z.number().optional(),
  // Read leniently: a result stored by a newer version (a field more) must not break reading it,
  // nor one stored before runs reported their artifacts.
  result: RunResultSchema.extend({ artifacts: RunResultSchema.shape.artifacts.default([]) })
    .loose()
    .optional(),
  /** Why a run ended without a RunResult (kernel gone, invocation lost): `{code, message}`. */
  error: RunFailureSchema.optional(),
});

/** A queued run as stored: its state, and its outcome once it has one. */
export type RunRecord = z.infer<typeof RunRecordSchema>;

/** The state of a queued run: waiting, under way, or one of the RunResult statuses. */
export type RunRecordStatus = RunRecord["status"];

/** How a run ended: a RunResult from the kernel, or an error that kept it from one. */
export type RunOutcome =
  | { status: RunResult["status"]; result: RunResult }
  | { status: "error"; error: { code: string; message: string } };

/** What a consumer found when it tried to take a run. */
export type ClaimOutcome = { claimed: true; record: RunRecord } | { claimed: false; record: RunRecord };

const RUN_PREFIX = "RUN#";

/**
 * Queued runs in the one table, beside their owner's kernels and keyed the same way (owner, then
 * kernel and run), with their own TTL. Status changes are conditional writes, so a run moves
 * `queued → running → ok|error|timeout` exactly once, whoever delivers its message how often.
 */
export class RunStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly ttlSeconds: number,
  ) {}

  /** Records a queued run; if the id is taken, returns the run already there instead. */
  async create(
    owner: string,
    kernelId: string,
    runId: string,
    codeSha256: string,
  ): Promise<{ created: boolean; record: RunRecord }> {
    const record: RunRecord = {
      owner,
      kernelId,
      runId,
      status: "queued",
      codeSha256,
      createdAt: new Date().toISOString(),
    };
    try {
      await storeCall(() =>
        this.client.send(
          new PutCommand({
            TableName: this.table,
            Item: { ...key(owner, kernelId, runId), ...record, expiresAt: this.expiry() },
            ConditionExpression: "attribute_not_exists(pk)",
          }),
        ),
      );
      return { created: true, record };
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      const existing = await this.get(owner, kernelId, runId);
      if (!existing) throw error;
      return { created: false, record: existing };
    }
  }

  /** Withdraws a run no consumer has taken (its message could not be sent). */
  async deleteQueued(record: RunRecord): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new DeleteCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId, record.runId),
          ConditionExpression: "#status = :queued AND attribute_not_exists(attempt)",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: { ":queued": "queued" },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  async get(owner: string, kernelId: string, runId: string): Promise<RunRecord | undefined> {
    const out = await storeCall(() =>
      this.client.send(
        new GetCommand({ TableName: this.table, Key: key(owner, kernelId, runId), ConsistentRead: true }),
      ),
    );
    return out.Item ? toRecord(out.Item) : undefined;
  }

  /**
   * Takes a queued run for one consumer attempt (`queued → running`). A run sent straight to the
   * queue by a trusted producer has no record yet; it is created here, already running.
   */
  async claim(
    owner: string,
    kernelId: string,
    runId: string,
    codeSha256: string,
    attempt: string,
    runningUntil: number,
  ): Promise<ClaimOutcome> {
    const now = new Date().toISOString();
    try {
      const out = await storeCall(() =>
        this.client.send(
          new UpdateCommand({
            TableName: this.table,
            Key: key(owner, kernelId, runId),
            UpdateExpression:
              "SET #status = :running, attempt = :attempt, runningUntil = :until, startedAt = :now, #owner = :owner, kernelId = :kernelId, runId = :runId, codeSha256 = if_not_exists(codeSha256, :sha), createdAt = if_not_exists(createdAt, :now), expiresAt = :exp",
            ConditionExpression: "attribute_not_exists(pk) OR (#status = :queued AND codeSha256 = :sha)",
            ExpressionAttributeNames: { "#status": "status", "#owner": "owner" },
            ExpressionAttributeValues: {
              ":running": "running",
              ":queued": "queued",
              ":attempt": attempt,
              ":until": runningUntil,
              ":now": now,
              ":owner": owner,
              ":kernelId": kernelId,
              ":runId": runId,
              ":sha": codeSha256,
              ":exp": this.expiry(),
            },
            ReturnValues: "ALL_NEW",
          }),
        ),
      );
      return { claimed: true, record: toRecord(out.Attributes ?? {}) };
    } catch (error) {
      if (!(error instanceof ConditionFailedError)) throw error;
      const existing = await this.get(owner, kernelId, runId);
      if (!existing) throw error;
      return { claimed: false, record: existing };
    }
  }

  /** Puts a run this attempt took but never sent back to `queued`, for a later delivery. */
  async release(record: RunRecord, attempt: string): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId, record.runId),
          UpdateExpression: "SET #status = :queued REMOVE attempt, runningUntil, startedAt",
          ConditionExpression: "#status = :running AND attempt = :attempt",
          ExpressionAttributeNames: { "#status": "status" },
          ExpressionAttributeValues: { ":queued": "queued", ":running": "running", ":attempt": attempt },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /**
   * Stores how the run ended; only the attempt holding it can. A result DynamoDB still finds too
   * big is stored without its outputs and artifacts (`truncated: true`) rather than lost.
   */
  async finish(record: RunRecord, attempt: string, outcome: RunOutcome): Promise<void> {
    try {
      await this.write(record, attempt, outcome);
    } catch (error) {
      if (!(error instanceof ItemTooLargeError) || !("result" in outcome)) throw error;
      const { result } = outcome;
      const trimmed = result.error && {
        ename: result.error.ename,
        evalue: result.error.evalue.slice(0, 4_096),
        traceback: [],
      };
      await this.write(record, attempt, {
        status: outcome.status,
        result: {
          ...result,
          data: [],
          error: trimmed,
          truncated: true,
          artifacts: [],
          ...(result.artifacts.length > 0 ? { artifactsTruncated: true } : {}),
        },
      });
    }
  }

  private async write(record: RunRecord, attempt: string, outcome: RunOutcome): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId, record.runId),
          UpdateExpression:
            "SET #status = :status, finishedAt = :now, #outcome = :outcome, expiresAt = :exp REMOVE attempt, runningUntil",
          ConditionExpression: "#status = :running AND attempt = :attempt",
          ExpressionAttributeNames: {
            "#status": "status",
            "#outcome": "result" in outcome ? "result" : "error",
          },
          ExpressionAttributeValues: {
            ":status": outcome.status,
            ":running": "running",
            ":attempt": attempt,
            ":now": new Date().toISOString(),
            ":outcome": "result" in outcome ? outcome.result : outcome.error,
            ":exp": this.expiry(),
          },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  /**
   * Closes a run whose invocation ended without a word (crash, timeout): whether its code ran is
   * unknown, so it is never run again; it ends as an error that says so.
   */
  async markLost(record: RunRecord, message: string): Promise<void> {
    await this.closeAsLost(record, message, "#status = :running AND runningUntil < :nowMs", {
      ":running": "running",
      ":nowMs": Date.now(),
    });
  }

  /**
   * Runs not yet ended, of every owner: for the dev server, whose in-memory queue a restart
   * empties. Never per request.
   */
  async *scanUnfinished(): AsyncGenerator<RunRecord> {
    const pages = paginateScan(
      { client: this.client },
      {
        TableName: this.table,
        ConsistentRead: true,
        FilterExpression: "begins_with(sk, :run) AND #status IN (:queued, :running)",
        ExpressionAttributeNames: { "#status": "status" },
        ExpressionAttributeValues: { ":run": RUN_PREFIX, ":queued": "queued", ":running": "running" },
      },
    )[Symbol.asyncIterator]();
    for (;;) {
      const page = await storeCall(() => pages.next());
      if (page.done) return;
      for (const item of page.value.Items ?? []) yield toRecord(item);
    }
  }

  /** Closes a run that will never be delivered, as `error` with code `RUN_LOST` and the reason. */
  async abandon(record: RunRecord, message: string): Promise<void> {
    await this.closeAsLost(record, message, "#status = :was", { ":was": record.status });
  }

  /** Ends a run as `error` / `RUN_LOST` if `condition` (over `#status` and `values`) still holds. */
  private async closeAsLost(
    record: RunRecord,
    message: string,
    condition: string,
    values: Record<string, unknown>,
  ): Promise<void> {
    await storeCall(() =>
      this.client.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(record.owner, record.kernelId, record.runId),
          UpdateExpression:
            "SET #status = :error, finishedAt = :now, #error = :lost REMOVE attempt, runningUntil",
          ConditionExpression: condition,
          ExpressionAttributeNames: { "#status": "status", "#error": "error" },
          ExpressionAttributeValues: {
            ...values,
            ":error": "error",
            ":now": new Date().toISOString(),
            ":lost": { code: "RUN_LOST", message },
          },
        }),
      ),
    ).catch(ignoreConditionFailed);
  }

  private expiry(): number {
    return expiresIn(this.ttlSeconds);
  }
}

function key(owner: string, kernelId: string, runId: string) {
  return { pk: `OWNER#${owner}`, sk: `${RUN_PREFIX}${kernelId}#${runId}` };
}

function toRecord(item: Record<string, unknown>): RunRecord {
  const parsed = RunRecordSchema.safeParse(item);
  if (!parsed.success) {
    throw new CorruptRecordError(`run record ${String(item.pk)}/${String(item.sk)} is malformed`, {
      cause: parsed.error,
    });
  }
  return parsed.data;
}
