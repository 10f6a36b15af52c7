import { createHash } from "node:crypto";

/** Longest sanitised part of a username: with `-<8 hex>` and `-<uuid>` a name stays within 63. */
const SLUG_LENGTH = 17;

/**
 * The caller as a `KERNEL_USERNAME`: a DNS label part (lowercase letters, digits, dashes, starting
 * with a letter) of at most 26 characters, with a short hash so two callers never share one after
 * sanitising. EG and jupyter-kernel-controller build pod, container and resource names as
 * `<username>-<kernelId>`, which must fit Kubernetes' 63-character limit.
 */
export function kernelUsername(owner: string): string {
  let slug = owner
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^[^a-z]+/, "")
    .slice(0, SLUG_LENGTH)
    .replace(/-+$/g, "");
  if (slug === "") slug = "caller";
  const hash = createHash("sha256").update(owner).digest("hex").slice(0, 8);
  return `${slug}-${hash}`;
}
