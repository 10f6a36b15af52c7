import { createHash } from "node:crypto";

/**
 * The caller as a `KERNEL_USERNAME`: lowercase letters, digits and dashes (EG and Kubernetes use
 * it in names), with a short hash so two callers never share one after sanitising.
 */
export function kernelUsername(owner: string): string {
  const slug =
    owner
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .slice(0, 40)
      .replace(/^-+|-+$/g, "") || "caller";
  const hash = createHash("sha256").update(owner).digest("hex").slice(0, 8);
  return `${slug}-${hash}`;
}
