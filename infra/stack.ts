import { Stack, type StackProps } from "aws-cdk-lib";
import type { Construct } from "constructs";
import { KernelTable } from "./table.ts";

/** The deployable product: one construct per concern (the functions, API and queue build on the table). */
export class PyboxStack extends Stack {
  readonly kernels: KernelTable;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.kernels = new KernelTable(this, "Kernels");
  }
}
