import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ArtifactSchema } from "../../../lib/core/run-result.ts";
import {
  ARTIFACT_LIMIT,
  ARTIFACTS_SOURCE,
  artifactsOf,
  artifactsSetupCode,
} from "../../../lib/jupyter/artifacts.ts";
import type { JupyterMessage } from "../../../lib/jupyter/messages.ts";

/** An `execute_reply` whose `payload` is the given list, as ipykernel sends it. */
function replyWith(payload: unknown): JupyterMessage {
  return {
    header: {
      msg_id: "reply",
      msg_type: "execute_reply",
      session: "kernel",
      username: "kernel",
      date: "2026-12-04T10:00:00.000Z",
      version: "5.3",
    },
    parent_header: {},
    metadata: {},
    content: { status: "ok", execution_count: 1, user_expressions: {}, payload },
    buffers: [],
  };
}

/** The tracker's payload entry: files as `{path, size, mtime}` with mtime in epoch ms. */
function report(files: Array<{ path: string; size: number; mtime: number }>, truncated = false) {
  return { source: ARTIFACTS_SOURCE, files, truncated };
}

const NOON = Date.UTC(2026, 11, 4, 12, 0, 0, 250);

describe("artifacts", () => {
  describe("artifactsOf", () => {
    it("reads the tracker's entry among other payloads, mtimes as ISO instants", () => {
      // Prepare
      const reply = replyWith([
        { source: "page", data: { "text/plain": "help" }, start: 0 },
        report([
          { path: "chart.png", size: 20_731, mtime: NOON },
          { path: "out/data.csv", size: 0, mtime: NOON - 1_000 },
        ]),
      ]);

      // Act
      const fields = artifactsOf(reply);

      // Assess
      assert.deepEqual(fields, {
        artifacts: [
          { path: "chart.png", size: 20_731, mtime: "2026-12-04T12:00:00.250Z" },
          { path: "out/data.csv", size: 0, mtime: "2026-12-04T11:59:59.250Z" },
        ],
      });
      for (const artifact of fields.artifacts) assert.ok(ArtifactSchema.safeParse(artifact).success);
    });

    it("says artifactsTruncated when the kernel capped the list", () => {
      // Prepare
      const files = Array.from({ length: ARTIFACT_LIMIT }, (_, i) => ({
        path: `n${i}.txt`,
        size: 1,
        mtime: NOON - i,
      }));

      // Act
      const fields = artifactsOf(replyWith([report(files, true)]));

      // Assess
      assert.equal(fields.artifacts.length, ARTIFACT_LIMIT);
      assert.equal(fields.artifactsTruncated, true);
    });

    it("is no artifacts, never an error, when the reply has none or a malformed one", () => {
      const malformed: unknown[] = [
        undefined,
        null,
        "payload",
        [],
        [{ source: "page" }],
        [{ source: ARTIFACTS_SOURCE }],
        [report([{ path: "a", size: -1, mtime: NOON }])],
        [report([{ path: "a", size: 1.5, mtime: NOON }])],
        [report([{ path: "", size: 1, mtime: NOON }])],
        [report([{ path: "a", size: 1, mtime: 1e300 }])],
        [{ ...report([]), truncated: "yes" }],
        [report(Array.from({ length: ARTIFACT_LIMIT + 1 }, () => ({ path: "a", size: 1, mtime: NOON })))],
      ];
      for (const payload of malformed) {
        // Act
        const fields = artifactsOf(replyWith(payload));

        // Assess
        assert.deepEqual(fields, { artifacts: [] }, JSON.stringify(payload)?.slice(0, 200));
      }
      assert.deepEqual(artifactsOf(undefined), { artifacts: [] }, "no reply at all");
    });

    it("keeps the list within its response budget, dropping the oldest and saying so", () => {
      // Prepare: 100 paths of 4,000 bytes would be 400 KB of response
      const files = Array.from({ length: ARTIFACT_LIMIT }, (_, i) => ({
        path: `${String(i).padStart(3, "0")}${"x".repeat(3_997)}`,
        size: 1,
        mtime: NOON - i,
      }));

      // Act
      const fields = artifactsOf(replyWith([report(files)]));

      // Assess
      assert.ok(fields.artifacts.length > 0 && fields.artifacts.length < ARTIFACT_LIMIT);
      assert.equal(fields.artifactsTruncated, true);
      assert.ok(JSON.stringify(fields.artifacts).length <= 64 * 1024);
      assert.equal(fields.artifacts[0]?.path.slice(0, 3), "000", "the newest are kept");
    });
  });

  describe("artifactsSetupCode", () => {
    it("is one Python statement that names nothing in the caller's namespace", () => {
      // Act
      const code = artifactsSetupCode();

      // Assess
      assert.equal(code.split("\n").length, 1, "one line: the source travels as a string literal");
      assert.match(
        code,
        /^exec\(compile\(".*", "<pybox artifacts>", "exec"\), \{"__name__": "_pybox_artifacts"\}\)$/,
      );
      assert.match(code, /post_run_cell/);
      assert.match(code, /write_payload/);
    });
  });
});
