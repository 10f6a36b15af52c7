import type { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";
import { UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { ConditionFailedError } from "../errors.ts";
import { storeCall } from "./errors.ts";

/**
 * The one caller a shared-host backend serves, kept in the one table (`pk = TENANCY#<backend>`),
 * so every function instance agrees on it. The first caller to start a kernel becomes it; an
 * operator hands the deployment to another by stopping the old caller's kernels and deleting the
 * item (warm instances follow within a minute).
 */
export class TenancyStore {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Makes `owner` the backend's one caller, or confirms it is; false when another caller is. */
  async claim(backend: string, owner: string): Promise<boolean> {
    try {
      await storeCall(() =>
        this.client.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: `TENANCY#${backend}`, sk: "TENANT" },
            UpdateExpression: "SET #owner = :owner, since = if_not_exists(since, :now)",
            ConditionExpression: "attribute_not_exists(pk) OR #owner = :owner",
            ExpressionAttributeNames: { "#owner": "owner" },
            ExpressionAttributeValues: { ":owner": owner, ":now": new Date().toISOString() },
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
