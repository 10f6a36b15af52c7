import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RunResult } from "../../../lib/core/run-result.ts";
import type { JupyterMessage } from "../../../lib/jupyter/messages.ts";
import { responseBytes } from "../../../lib/jupyter/output-limits.ts";
import { RESULT_OVERHEAD_BYTES, RunCollector, stripAnsi } from "../../../lib/jupyter/run-collector.ts";

const REQUEST_ID = "0b5cbb1e-7d1a-4f0e-9b7a-3c1a2d3e4f50";
const CAP = 1024 * 1024;
const LIMITS = { maxOutputBytes: CAP, maxEntryBytes: CAP };

/** What a stream entry costs in the total before its text: `{"text/plain":""}` and a comma. */
const STREAM = responseBytes({ "text/plain": "" }) + 1;

let sequence = 0;

/** A message as ipykernel 6 sends it in answer to the request REQUEST_ID. */
function kernelMessage(msgType: string, content: Record<string, unknown>): JupyterMessage {
  sequence += 1;
  return {
    header: {
      msg_id: `kernel-msg-${sequence}`,
      msg_type: msgType,
      session: "kernel-session",
      username: "kernel",
      date: "2024-01-01T00:00:00.000Z",
      version: "5.3",
    },
    parent_header: {
      msg_id: REQUEST_ID,
      msg_type: "execute_request",
      session: "client-session",
      username: "pybox",
      date: "2024-01-01T00:00:00.000Z",
      version: "5.3",
    },
    metadata: {},
    content,
    buffers: [],
  };
}

const busy = () => kernelMessage("status", { execution_state: "busy" });
const idle = () => kernelMessage("status", { execution_state: "idle" });
const input = (code: string, count: number) =>
  kernelMessage("execute_input", { code, execution_count: count });
const stream = (name: "stdout" | "stderr", text: string) => kernelMessage("stream", { name, text });
const executeResult = (data: Record<string, unknown>, count: number) =>
  kernelMessage("execute_result", { data, metadata: {}, execution_count: count });
const displayData = (data: Record<string, unknown>, displayId?: string) =>
  kernelMessage("display_data", {
    data,
    metadata: {},
    transient: displayId === undefined ? {} : { display_id: displayId },
  });
const updateDisplayData = (data: Record<string, unknown>, displayId: string) =>
  kernelMessage("update_display_data", { data, metadata: {}, transient: { display_id: displayId } });
const clearOutput = (wait: boolean) => kernelMessage("clear_output", { wait });
const errorMessage = (ename: string, evalue: string, traceback: string[]) =>
  kernelMessage("error", { ename, evalue, traceback });
const okReply = (count: number) =>
  kernelMessage("execute_reply", { status: "ok", execution_count: count, user_expressions: {}, payload: [] });
const errorReply = (count: number, ename: string, evalue: string, traceback: string[]) =>
  kernelMessage("execute_reply", {
    status: "error",
    execution_count: count,
    ename,
    evalue,
    traceback,
    engine_info: { engine_uuid: "e", engine_id: -1, method: "execute" },
  });

/** Feeds a recorded run: iopub messages in order, the reply after the iopub message at `replyAfter`. */
function collect(
  iopub: readonly JupyterMessage[],
  reply: JupyterMessage | undefined,
  options: { maxOutputBytes?: number; maxEntryBytes?: number; replyAfter?: number } = {},
): RunCollector {
  const maxOutputBytes = options.maxOutputBytes ?? CAP;
  const collector = new RunCollector({
    maxOutputBytes,
    maxEntryBytes: options.maxEntryBytes ?? maxOutputBytes,
  });
  const replyAfter = options.replyAfter ?? iopub.length - 1;
  if (reply && replyAfter < 0) collector.onReply(reply);
  iopub.forEach((message, index) => {
    collector.onIopub(message);
    if (reply && index === replyAfter) collector.onReply(reply);
  });
  return collector;
}

/** Traceback lines of `print("a"); 1/0` as IPython 8 colours them. */
const ZERO_DIVISION_TRACEBACK = [
  "\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
  "\u001b[0;31mZeroDivisionError\u001b[0m                         Traceback (most recent call last)",
  'Cell \u001b[0;32mIn[1], line 1\u001b[0m\n\u001b[0;32m----> 1\u001b[0m \u001b[38;5;28mprint\u001b[39m(\u001b[38;5;124m"\u001b[39m\u001b[38;5;124ma\u001b[39m\u001b[38;5;124m"\u001b[39m); \u001b[38;5;241m1\u001b[39m\u001b[38;5;241m/\u001b[39m\u001b[38;5;241m0\u001b[39m\n',
  "\u001b[0;31mZeroDivisionError\u001b[0m: division by zero",
];
const ZERO_DIVISION_TRACEBACK_PLAIN = [
  "---------------------------------------------------------------------------",
  "ZeroDivisionError                         Traceback (most recent call last)",
  'Cell In[1], line 1\n----> 1 print("a"); 1/0\n',
  "ZeroDivisionError: division by zero",
];

/** Traceback lines of `import time; time.sleep(60)` interrupted, as IPython 8 colours them. */
const KEYBOARD_INTERRUPT_TRACEBACK = [
  "\u001b[0;31m---------------------------------------------------------------------------\u001b[0m",
  "\u001b[0;31mKeyboardInterrupt\u001b[0m                         Traceback (most recent call last)",
  "Cell \u001b[0;32mIn[4], line 1\u001b[0m\n\u001b[0;32m----> 1\u001b[0m time\u001b[38;5;241m.\u001b[39msleep(\u001b[38;5;241m60\u001b[39m)\n",
  "\u001b[0;31mKeyboardInterrupt\u001b[0m: ",
];
const KEYBOARD_INTERRUPT_TRACEBACK_PLAIN = [
  "---------------------------------------------------------------------------",
  "KeyboardInterrupt                         Traceback (most recent call last)",
  "Cell In[4], line 1\n----> 1 time.sleep(60)\n",
  "KeyboardInterrupt: ",
];

describe("stripAnsi", () => {
  it("removes SGR colour codes, including 256-colour ones, and keeps the text", () => {
    // Prepare
    const coloured = "\u001b[0;31mError\u001b[0m: \u001b[38;5;241m1\u001b[39m\u001b[1m!\u001b[22m";

    // Act
    const plain = stripAnsi(coloured);

    // Assess
    assert.equal(plain, "Error: 1!");
  });

  it("leaves text without escapes unchanged", () => {
    // Prepare
    const text = "a [0;31m b\n";

    // Act
    const plain = stripAnsi(text);

    // Assess
    assert.equal(plain, "a [0;31m b\n");
  });
});

describe("RunCollector", () => {
  describe("stream output", () => {
    it("merges consecutive chunks of one stream into one entry (print(1); print(1))", () => {
      // Prepare
      const code = "print(1); print(1)";

      // Act
      const result = collect(
        [busy(), input(code, 1), stream("stdout", "1\n"), stream("stdout", "1\n"), idle()],
        okReply(1),
      ).result(12);

      // Assess
      assert.deepEqual(result, {
        status: "ok",
        data: [{ "text/plain": "1\n1\n" }],
        error: null,
        executionCount: 1,
        durationMs: 12,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });

    it("starts a new entry each time the stream changes (stdout, stderr, stdout)", () => {
      // Prepare
      const code = 'import sys; print("a"); print("b", file=sys.stderr); print("c")';

      // Act
      const result = collect(
        [
          busy(),
          input(code, 2),
          stream("stdout", "a\n"),
          stream("stderr", "b\n"),
          stream("stdout", "c\n"),
          idle(),
        ],
        okReply(2),
      ).result(5);

      // Assess
      assert.equal(result.status, "ok");
      assert.deepEqual(result.data, [
        { "text/plain": "a\n" },
        { "text/plain": "b\n" },
        { "text/plain": "c\n" },
      ]);
    });

    it("does not merge a stream chunk into a stream entry that a display came between", () => {
      // Prepare
      const code = 'print("x"); display(1); print("y")';

      // Act
      const result = collect(
        [
          busy(),
          input(code, 3),
          stream("stdout", "x\n"),
          displayData({ "text/plain": "1" }),
          stream("stdout", "y\n"),
          idle(),
        ],
        okReply(3),
      ).result(5);

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": "x\n" },
        { "text/plain": "1" },
        { "text/plain": "y\n" },
      ]);
    });
  });

  describe("rich output", () => {
    it("keeps the value of the last expression (1+1) and its execution count", () => {
      // Prepare
      const code = "1+1";

      // Act
      const result = collect(
        [busy(), input(code, 7), executeResult({ "text/plain": "2" }, 7), idle()],
        okReply(7),
        { replyAfter: 2 },
      ).result(3);

      // Assess
      assert.deepEqual(result, {
        status: "ok",
        data: [{ "text/plain": "2" }],
        error: null,
        executionCount: 7,
        durationMs: 3,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });

    it("takes the execution count from execute_input when no reply came", () => {
      // Prepare
      const iopub = [busy(), input("1+1", 4), executeResult({ "text/plain": "2" }, 4), idle()];

      // Act
      const result = collect(iopub, undefined).result(3);

      // Assess
      assert.equal(result.executionCount, 4);
    });

    it("takes the execution count from the reply when execute_input was missed", () => {
      // Prepare
      const iopub = [executeResult({ "text/plain": "2" }, 9), idle()];

      // Act
      const result = collect(iopub, okReply(9)).result(3);

      // Assess
      assert.equal(result.executionCount, 9);
    });

    it("keeps every MIME type of a DataFrame together in one bundle", () => {
      // Prepare
      const html =
        '<div>\n<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n      <th>a</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th>0</th>\n      <td>1</td>\n    </tr>\n    <tr>\n      <th>1</th>\n      <td>2</td>\n    </tr>\n  </tbody>\n</table>\n</div>';
      const text = "   a\n0  1\n1  2";
      const code = 'import pandas as pd; pd.DataFrame({"a": [1, 2]})';

      // Act
      const result = collect(
        [busy(), input(code, 5), executeResult({ "text/plain": text, "text/html": html }, 5), idle()],
        okReply(5),
      ).result(40);

      // Assess
      assert.equal(result.status, "ok");
      assert.deepEqual(result.data, [{ "text/plain": text, "text/html": html }]);
    });

    it("keeps a matplotlib figure as image/png with its text/plain, after the plot call's value", () => {
      // Prepare
      const png =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
      const code = "import matplotlib.pyplot as plt; plt.plot([1, 2, 3])";

      // Act
      const result = collect(
        [
          busy(),
          input(code, 6),
          executeResult({ "text/plain": "[<matplotlib.lines.Line2D at 0x7f3a2c1d5e10>]" }, 6),
          displayData({ "image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>" }),
          idle(),
        ],
        okReply(6),
      ).result(250);

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": "[<matplotlib.lines.Line2D at 0x7f3a2c1d5e10>]" },
        { "image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>" },
      ]);
      assert.equal(result.error, null);
    });

    it("ignores a display whose data is not an object, keeping an empty bundle", () => {
      // Prepare
      const iopub = [kernelMessage("display_data", { data: ["not", "a", "bundle"], metadata: {} }), idle()];

      // Act
      const result = collect(iopub, okReply(1)).result(1);

      // Assess
      assert.deepEqual(result.data, [{}]);
    });

    it("does not share the bundle object with the kernel message", () => {
      // Prepare
      const data: Record<string, unknown> = { "text/plain": "2" };
      const collector = collect([executeResult(data, 1), idle()], okReply(1));

      // Act
      data["text/plain"] = "changed";
      const result = collector.result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "2" }]);
    });
  });

  describe("no output", () => {
    it("returns an empty data list for code that displays nothing", () => {
      // Prepare
      const code = "x = 1";

      // Act
      const result = collect([busy(), input(code, 1), idle()], okReply(1)).result(2);

      // Assess
      assert.deepEqual(result, {
        status: "ok",
        data: [],
        error: null,
        executionCount: 1,
        durationMs: 2,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });
  });

  describe("errors", () => {
    it("keeps output before the exception and strips colours from the traceback (print('a'); 1/0)", () => {
      // Prepare
      const code = 'print("a"); 1/0';

      // Act
      const result = collect(
        [
          busy(),
          input(code, 1),
          stream("stdout", "a\n"),
          errorMessage("ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK),
          idle(),
        ],
        errorReply(1, "ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK),
      ).result(8);

      // Assess
      assert.deepEqual(result, {
        status: "error",
        data: [{ "text/plain": "a\n" }],
        error: {
          ename: "ZeroDivisionError",
          evalue: "division by zero",
          traceback: ZERO_DIVISION_TRACEBACK_PLAIN,
        },
        executionCount: 1,
        durationMs: 8,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });

    it("takes the error from the reply when the iopub error message was missed", () => {
      // Prepare
      const iopub = [busy(), input('print("a"); 1/0', 2), stream("stdout", "a\n"), idle()];
      const reply = errorReply(2, "ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK);

      // Act
      const result = collect(iopub, reply).result(8);

      // Assess
      assert.equal(result.status, "error");
      assert.deepEqual(result.data, [{ "text/plain": "a\n" }]);
      assert.deepEqual(result.error, {
        ename: "ZeroDivisionError",
        evalue: "division by zero",
        traceback: ZERO_DIVISION_TRACEBACK_PLAIN,
      });
      assert.equal(result.executionCount, 2);
    });

    it("keeps the iopub error when the reply carries a different one", () => {
      // Prepare
      const iopub = [errorMessage("ValueError", "from iopub", []), idle()];
      const reply = errorReply(1, "RuntimeError", "from reply", []);

      // Act
      const result = collect(iopub, reply).result(1);

      // Assess
      assert.deepEqual(result.error, { ename: "ValueError", evalue: "from iopub", traceback: [] });
    });

    it("fills defaults for an error without name, value or traceback", () => {
      // Prepare
      const iopub = [kernelMessage("error", {}), idle()];

      // Act
      const result = collect(iopub, undefined).result(1);

      // Assess
      assert.equal(result.status, "error");
      assert.deepEqual(result.error, { ename: "Error", evalue: "", traceback: [] });
    });

    it("reports a request the kernel aborted (after an earlier error) as an error", () => {
      // Prepare
      const reply = kernelMessage("execute_reply", { status: "aborted", execution_count: null });

      // Act
      const result = collect([busy(), idle()], reply).result(1);

      // Assess
      assert.deepEqual(result, {
        status: "error",
        data: [],
        error: { ename: "ExecutionAborted", evalue: "the kernel aborted this request", traceback: [] },
        executionCount: null,
        durationMs: 1,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });
  });

  describe("done", () => {
    it("is done only once the reply has come after idle", () => {
      // Prepare
      const collector = new RunCollector(LIMITS);
      collector.onIopub(busy());
      collector.onIopub(input("1+1", 1));
      collector.onIopub(executeResult({ "text/plain": "2" }, 1));

      // Act
      collector.onIopub(idle());
      const afterIdle = { done: collector.done, isIdle: collector.isIdle };
      collector.onReply(okReply(1));

      // Assess
      assert.deepEqual(afterIdle, { done: false, isIdle: true });
      assert.equal(collector.done, true);
      assert.deepEqual(collector.result(1).data, [{ "text/plain": "2" }]);
    });

    it("is done only once idle has come after the reply", () => {
      // Prepare
      const collector = new RunCollector(LIMITS);
      collector.onIopub(busy());
      collector.onIopub(input("1+1", 1));

      // Act
      collector.onReply(okReply(1));
      const afterReply = { done: collector.done, isIdle: collector.isIdle };
      collector.onIopub(executeResult({ "text/plain": "2" }, 1));
      const beforeIdle = collector.done;
      collector.onIopub(idle());

      // Assess
      assert.deepEqual(afterReply, { done: false, isIdle: false });
      assert.equal(beforeIdle, false);
      assert.equal(collector.done, true);
      assert.deepEqual(collector.result(1).data, [{ "text/plain": "2" }]);
    });

    it("is not done on busy or on a starting state", () => {
      // Prepare
      const collector = new RunCollector(LIMITS);
      collector.onReply(okReply(1));

      // Act
      collector.onIopub(busy());
      collector.onIopub(kernelMessage("status", { execution_state: "starting" }));

      // Assess
      assert.equal(collector.isIdle, false);
      assert.equal(collector.done, false);
    });
  });

  describe("clear_output", () => {
    it("clears everything shown so far at once when wait is false", () => {
      // Prepare
      const iopub = [
        busy(),
        stream("stdout", "step 1\n"),
        displayData({ "text/plain": "old" }),
        clearOutput(false),
      ];

      // Act
      const cleared = collect(iopub, undefined).result(1);
      const collector = collect([...iopub, stream("stdout", "step 2\n"), idle()], okReply(1));
      const result = collector.result(2);

      // Assess
      assert.deepEqual(cleared.data, []);
      assert.deepEqual(result.data, [{ "text/plain": "step 2\n" }]);
      assert.equal(result.truncated, false);
    });

    it("with wait, keeps the old output until the next output replaces it", () => {
      // Prepare
      const iopub = [busy(), stream("stdout", "50%\n"), clearOutput(true)];

      // Act
      const pending = collect(iopub, undefined).result(1);
      const result = collect([...iopub, stream("stdout", "100%\n"), idle()], okReply(1)).result(2);

      // Assess
      assert.deepEqual(pending.data, [{ "text/plain": "50%\n" }]);
      assert.deepEqual(result.data, [{ "text/plain": "100%\n" }]);
    });

    it("with wait, is applied by the next display too", () => {
      // Prepare
      const iopub = [
        busy(),
        displayData({ "text/plain": "frame 1" }),
        clearOutput(true),
        displayData({ "text/plain": "frame 2" }),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1)).result(2);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "frame 2" }]);
    });

    it("with wait and no later output, keeps the old output", () => {
      // Prepare
      const iopub = [busy(), stream("stdout", "last\n"), clearOutput(true), idle()];

      // Act
      const result = collect(iopub, okReply(1)).result(2);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "last\n" }]);
    });

    it("gives back the room in the output cap", () => {
      // Prepare
      const iopub = [
        stream("stdout", "0123456789"),
        clearOutput(false),
        stream("stdout", "abcdefghij"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: STREAM + 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "abcdefghij" }]);
      assert.equal(result.truncated, false);
    });

    it("collects output again after clearing output that had been cut at the cap", () => {
      // Prepare
      const iopub = [stream("stdout", "0123456789AB"), clearOutput(true), stream("stdout", "done\n"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: STREAM + 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "done\n" }]);
    });
  });

  describe("update_display_data", () => {
    it("replaces the bundle of the display with that display_id, in place", () => {
      // Prepare
      const iopub = [
        busy(),
        displayData({ "text/plain": "progress 0%" }, "bar"),
        stream("stdout", "working\n"),
        displayData({ "text/plain": "other" }, "other"),
        updateDisplayData({ "text/plain": "progress 100%", "text/html": "<b>100%</b>" }, "bar"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1)).result(1);

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": "progress 100%", "text/html": "<b>100%</b>" },
        { "text/plain": "working\n" },
        { "text/plain": "other" },
      ]);
    });

    it("replaces every display that shares the display_id", () => {
      // Prepare
      const iopub = [
        displayData({ "text/plain": "v1" }, "shared"),
        displayData({ "text/plain": "v1" }, "shared"),
        updateDisplayData({ "text/plain": "v2" }, "shared"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1)).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "v2" }, { "text/plain": "v2" }]);
    });

    it("ignores an update for a display_id that was not shown in this run", () => {
      // Prepare
      const iopub = [
        displayData({ "text/plain": "mine" }, "mine"),
        updateDisplayData({ "text/plain": "theirs" }, "elsewhere"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1)).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "mine" }]);
    });

    it("keeps the output cap when an update is larger than the display it replaces", () => {
      // Prepare
      const big = { "text/plain": "x".repeat(500) };
      const iopub = [displayData({ "text/plain": "small" }, "d"), updateDisplayData(big, "d"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 100 }).result(1);

      // Assess
      assert.ok(
        responseBytes(result.data[0]) < 100,
        `the entry takes ${responseBytes(result.data[0])} bytes`,
      );
      assert.match(String(result.data[0]?.["text/plain"]), /^x+$/);
      assert.equal(result.truncated, true);
    });
  });

  describe("result with a timeout", () => {
    it("says timeout, keeps the output and the interrupted traceback", () => {
      // Prepare
      const code = 'import time; print("started"); time.sleep(60)';
      const collector = collect(
        [
          busy(),
          input(code, 4),
          stream("stdout", "started\n"),
          errorMessage("KeyboardInterrupt", "", KEYBOARD_INTERRUPT_TRACEBACK),
          idle(),
        ],
        errorReply(4, "KeyboardInterrupt", "", KEYBOARD_INTERRUPT_TRACEBACK),
      );

      // Act
      const result = collector.result(1_503, 1_000);

      // Assess
      assert.deepEqual(result, {
        status: "timeout",
        data: [{ "text/plain": "started\n" }],
        error: {
          ename: "TimeoutError",
          evalue: "execution exceeded 1000 ms and was interrupted",
          traceback: KEYBOARD_INTERRUPT_TRACEBACK_PLAIN,
        },
        executionCount: 4,
        durationMs: 1_503,
        truncated: false,
        artifacts: [],
      } satisfies RunResult);
    });

    it("has an empty traceback when the kernel never answered the interrupt", () => {
      // Prepare
      const collector = collect([busy(), input("while True: pass", 5)], undefined);

      // Act
      const result = collector.result(3_000, 2_000);

      // Assess
      assert.equal(result.status, "timeout");
      assert.deepEqual(result.error, {
        ename: "TimeoutError",
        evalue: "execution exceeded 2000 ms and was interrupted",
        traceback: [],
      });
      assert.equal(result.executionCount, 5);
      assert.equal(collector.done, false);
    });

    it("does not pass off the traceback of another exception as the interrupted one", () => {
      // Prepare
      const collector = collect(
        [errorMessage("ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK), idle()],
        errorReply(1, "ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK),
      );

      // Act
      const result = collector.result(10, 5);

      // Assess
      assert.equal(result.status, "timeout");
      assert.deepEqual(result.error, {
        ename: "TimeoutError",
        evalue: "execution exceeded 5 ms and was interrupted",
        traceback: [],
      });
    });
  });

  describe("output cap", () => {
    it("cuts stream text at the total, marks the result truncated and drops what follows", () => {
      // Prepare
      const iopub = [
        busy(),
        input("for i in range(3): print(i * 10)", 1),
        stream("stdout", "0123"),
        stream("stdout", "456789ABCDEF"),
        displayData({ "text/plain": "dropped" }),
        stream("stderr", "dropped too\n"),
        executeResult({ "text/plain": "also dropped" }, 1),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: STREAM + 10 }).result(4);

      // Assess
      assert.deepEqual(result, {
        status: "ok",
        data: [{ "text/plain": "0123456789" }],
        error: null,
        executionCount: 1,
        durationMs: 4,
        truncated: true,
        artifacts: [],
      } satisfies RunResult);
    });

    it("keeps text that exactly fills the total without marking it truncated", () => {
      // Prepare
      const iopub = [stream("stdout", "12345"), stream("stderr", "67890"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 2 * STREAM + 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "12345" }, { "text/plain": "67890" }]);
      assert.equal(result.truncated, false);
    });

    it("cuts a text bundle at the total and drops every bundle after it", () => {
      // Prepare
      const first = { "text/plain": "ok" };
      const second = { "text/plain": "too large for the room left" };
      const third = { "text/plain": "s" }; // would fit, but comes after the total was reached
      const iopub = [displayData(first), displayData(second), displayData(third), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 2 * STREAM + 2 + 9 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "ok" }, { "text/plain": "too large" }]);
      assert.equal(result.truncated, true);
    });

    it("cuts output back from its end to make room for the error, which it keeps whole", () => {
      // Prepare
      const error = {
        ename: "ZeroDivisionError",
        evalue: "division by zero",
        traceback: ZERO_DIVISION_TRACEBACK_PLAIN,
      };
      const iopub = [
        stream("stdout", "x".repeat(50)),
        errorMessage("ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK),
        idle(),
      ];

      // Act
      const result = collect(iopub, errorReply(1, "ZeroDivisionError", "division by zero", []), {
        maxOutputBytes: STREAM + 20 + responseBytes(error),
      }).result(1);

      // Assess
      assert.equal(result.status, "error");
      assert.deepEqual(result.data, [{ "text/plain": "x".repeat(20) }]);
      assert.equal(result.truncated, true);
      assert.deepEqual(result.error, error);
    });

    it("counts text as the Lambda response carries it: JSON inside JSON", () => {
      // Prepare
      const cases = [
        { text: "é".repeat(10), each: 2 },
        { text: "\n".repeat(10), each: 3 },
        { text: '"'.repeat(10), each: 4 },
        { text: "\\".repeat(10), each: 4 },
        { text: "\u0001".repeat(10), each: 7 },
      ];

      for (const { text, each } of cases) {
        // Act
        const result = collect([stream("stdout", text), idle()], okReply(1), {
          maxOutputBytes: STREAM + 5 * each,
        }).result(1);

        // Assess
        assert.deepEqual(result.data, [{ "text/plain": text.slice(0, 5) }], JSON.stringify(text));
        assert.equal(result.truncated, true);
      }
    });

    it("keeps control-character output within the cap as the response measures it", () => {
      // Prepare: print("\x01" * 3_000_000), as ipykernel sends it, in chunks
      const cap = 64 * 1024;
      const chunk = "\u0001".repeat(8_192);
      const iopub = [busy(), ...Array.from({ length: 366 }, () => stream("stdout", chunk)), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: cap, maxEntryBytes: cap / 4 }).result(1);

      // Assess
      const body = JSON.stringify(result);
      assert.ok(Buffer.byteLength(body) <= cap + RESULT_OVERHEAD_BYTES, `body is ${body.length} bytes`);
      assert.ok(
        responseBytes(result) <= cap + RESULT_OVERHEAD_BYTES,
        `response is ${responseBytes(result)} bytes`,
      );
      assert.equal(result.truncated, true);
      assert.equal(result.data.length, 1);
      assert.ok(responseBytes(result.data[0]) <= cap / 4);
    });

    it("leaves room in its overhead for the fixed fields and a timeout's error", () => {
      // Prepare
      const collector = collect([busy(), input("while True: pass", 2 ** 31)], undefined, {
        maxOutputBytes: 1_024,
      });

      // Act
      const result: RunResult = { ...collector.result(3_600_000_000, 3_600_000), restarted: true };

      // Assess
      assert.ok(responseBytes(result) <= RESULT_OVERHEAD_BYTES, `${responseBytes(result)} bytes`);
    });

    it("never cuts inside a character: an emoji at the boundary is kept whole or left out", () => {
      // Prepare
      const text = `a${"😀".repeat(20)}`;

      for (let room = 0; room <= 20; room++) {
        // Act
        const result = collect([stream("stdout", text), idle()], okReply(1), {
          maxOutputBytes: STREAM + room,
        }).result(1);

        // Assess
        const kept = String(result.data[0]?.["text/plain"] ?? "");
        assert.ok(text.startsWith(kept), `room ${room}`);
        assert.equal(Buffer.from(kept, "utf8").toString("utf8"), kept, `room ${room}: a broken character`);
        assert.equal(kept.length, room === 0 ? 0 : 1 + 2 * Math.floor((room - 1) / 4), `room ${room}`);
      }
    });
  });

  describe("entry cap", () => {
    it("cuts one stream entry at the entry cap and drops the rest of it, but keeps later entries", () => {
      // Prepare
      const iopub = [
        stream("stdout", "0123456"),
        stream("stdout", "789ABC"),
        stream("stdout", "more of the same entry\n"),
        stream("stderr", "warning\n"),
        displayData({ "text/plain": "shown" }),
        stream("stdout", "after\n"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1), { maxEntryBytes: STREAM - 1 + 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": "0123456789" },
        { "text/plain": "warning\n" },
        { "text/plain": "shown" },
        { "text/plain": "after\n" },
      ]);
      assert.equal(result.truncated, true);
    });

    it("drops an image over the entry cap whole and keeps its text/plain", () => {
      // Prepare
      const png = "iVBORw0KGgo".repeat(1_000);
      const figure = { "image/png": png, "text/plain": "<Figure size 640x480 with 1 Axes>" };
      const iopub = [displayData(figure), stream("stdout", "next\n"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxEntryBytes: 1_024 }).result(1);

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": "<Figure size 640x480 with 1 Axes>" },
        { "text/plain": "next\n" },
      ]);
      assert.equal(result.truncated, true);
    });

    it("drops rich values largest first, and only as many as it must", () => {
      // Prepare
      const bundle = {
        "text/plain": "<IPython.core.display.HTML object>",
        "text/html": `<table>${"<tr><td>1</td></tr>".repeat(20)}</table>`,
        "image/png": "A".repeat(5_000),
      };

      // Act
      const result = collect([executeResult(bundle, 1), idle()], okReply(1), { maxEntryBytes: 1_024 }).result(
        1,
      );

      // Assess
      assert.deepEqual(result.data, [
        { "text/plain": bundle["text/plain"], "text/html": bundle["text/html"] },
      ]);
      assert.equal(result.truncated, true);
    });

    it("cuts a long text/plain value cleanly, but never HTML or JSON, which cut would not parse", () => {
      // Prepare
      const bundle = {
        "text/plain": "y".repeat(3_000),
        "text/html": `<pre>${"y".repeat(3_000)}</pre>`,
        "application/json": { values: Array.from({ length: 500 }, (_, i) => i) },
      };

      // Act
      const result = collect([executeResult(bundle, 1), idle()], okReply(1), { maxEntryBytes: 1_024 }).result(
        1,
      );

      // Assess
      assert.equal(result.data.length, 1);
      assert.deepEqual(Object.keys(result.data[0] ?? {}), ["text/plain"]);
      assert.match(String(result.data[0]?.["text/plain"]), /^y+$/);
      assert.ok(responseBytes(result.data[0]) <= 1_024);
      assert.ok(responseBytes(result.data[0]) > 1_000, "the text is cut at the cap, not far below it");
    });

    it("keeps no entry for a bundle with nothing that fits, and goes on with the next output", () => {
      // Prepare
      const iopub = [displayData({ "image/png": "B".repeat(5_000) }), stream("stdout", "after\n"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxEntryBytes: 1_024 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "after\n" }]);
      assert.equal(result.truncated, true);
    });

    it("applies to a display update too: an updated figure too large keeps its text", () => {
      // Prepare
      const iopub = [
        displayData({ "text/plain": "<Figure 1>" }, "fig"),
        updateDisplayData({ "image/png": "C".repeat(5_000), "text/plain": "<Figure 2>" }, "fig"),
        idle(),
      ];

      // Act
      const result = collect(iopub, okReply(1), { maxEntryBytes: 1_024 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "<Figure 2>" }]);
      assert.equal(result.truncated, true);
    });

    it("is no larger than the total, whatever it is given", () => {
      // Prepare
      const iopub = [stream("stdout", "z".repeat(100)), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: STREAM + 10, maxEntryBytes: 1_000 }).result(
        1,
      );

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "z".repeat(10) }]);
    });
  });

  describe("error cap", () => {
    /** A RecursionError's traceback, with lines far longer than any real one. */
    const hugeTraceback = (frames: number) => [
      "---------------------------------------------------------------------------",
      "RecursionError                            Traceback (most recent call last)",
      ...Array.from(
        { length: frames },
        (_, i) => `Cell In[1], line 1, in f(n=${i})\n----> 1 ${"f(n + 1); ".repeat(50)}\n`,
      ),
      `RecursionError: maximum recursion depth exceeded ${"!".repeat(5_000)}`,
    ];

    it("bounds a huge traceback by the entry cap, keeping its name and both ends", () => {
      // Prepare
      const traceback = hugeTraceback(3_000);
      const evalue = `maximum recursion depth exceeded ${"!".repeat(5_000)}`;
      const iopub = [stream("stdout", "before\n"), errorMessage("RecursionError", evalue, traceback), idle()];

      // Act
      const result = collect(iopub, errorReply(1, "RecursionError", evalue, traceback), {
        maxEntryBytes: 16 * 1024,
      }).result(1);

      // Assess
      const error = result.error;
      assert.ok(error, "the error is kept");
      assert.equal(result.status, "error");
      assert.equal(error.ename, "RecursionError");
      assert.ok(evalue.startsWith(error.evalue) && error.evalue.startsWith("maximum recursion depth"));
      assert.ok(responseBytes(error) <= 16 * 1024, `error takes ${responseBytes(error)} bytes`);
      assert.equal(error.traceback[0], traceback[0]);
      assert.equal(error.traceback[1], traceback[1]);
      assert.match(error.traceback.at(-1) ?? "", /^RecursionError: maximum recursion depth exceeded !+$/);
      assert.ok(error.traceback.some((line) => /traceback entries left out/.test(line)));
      assert.deepEqual(result.data, [{ "text/plain": "before\n" }]);
      assert.equal(result.truncated, true);
    });

    it("keeps an error that fits as it is, without marking the result truncated", () => {
      // Prepare
      const iopub = [errorMessage("ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK), idle()];

      // Act
      const result = collect(iopub, errorReply(1, "ZeroDivisionError", "division by zero", []), {
        maxEntryBytes: 1_024,
      }).result(1);

      // Assess
      assert.deepEqual(result.error?.traceback, ZERO_DIVISION_TRACEBACK_PLAIN);
      assert.equal(result.truncated, false);
    });

    it("keeps the error after output filled the total, and the whole result within its bound", () => {
      // Prepare
      const cap = 32 * 1024;
      const traceback = hugeTraceback(500);
      const iopub = [
        ...Array.from({ length: 40 }, () => stream("stdout", "o".repeat(1_000))),
        displayData({ "text/plain": "dropped" }),
        errorMessage("RecursionError", "maximum recursion depth exceeded", traceback),
        idle(),
      ];

      // Act
      const result = collect(iopub, undefined, { maxOutputBytes: cap, maxEntryBytes: cap / 2 }).result(1);

      // Assess
      assert.equal(result.error?.ename, "RecursionError");
      assert.ok(responseBytes(result) <= cap + RESULT_OVERHEAD_BYTES, `${responseBytes(result)} bytes`);
      assert.ok(responseBytes(result.data) > cap / 3, "output is cut back only as far as needed");
      assert.equal(result.truncated, true);
    });

    it("keeps the interrupted traceback of a timeout within the bound", () => {
      // Prepare
      const cap = 8 * 1024;
      const traceback = [...hugeTraceback(200).slice(0, -1), "KeyboardInterrupt: "];
      const iopub = [
        stream("stdout", "p".repeat(20_000)),
        errorMessage("KeyboardInterrupt", "", traceback),
        idle(),
      ];

      // Act
      const result = collect(iopub, undefined, { maxOutputBytes: cap, maxEntryBytes: cap / 2 }).result(
        1,
        3_600_000,
      );

      // Assess
      assert.equal(result.status, "timeout");
      assert.equal(result.error?.ename, "TimeoutError");
      assert.equal(result.error?.traceback.at(-1), "KeyboardInterrupt: ");
      assert.ok(responseBytes(result) <= cap + RESULT_OVERHEAD_BYTES, `${responseBytes(result)} bytes`);
    });
  });

  describe("bounds, on random output", () => {
    it("keeps every result within its caps, cuts only whole characters, and says when it cut", () => {
      // Prepare
      const random = seeded(20_261_126);
      const alphabet = [
        "a",
        "b",
        " ",
        "\n",
        "\t",
        '"',
        "\\",
        "\u0001",
        "\u001f",
        "é",
        "€",
        "😀",
        "\ud800",
        "\udfff",
      ];
      const text = () =>
        Array.from(
          { length: Math.floor(random() ** 3 * 400) },
          () => alphabet[Math.floor(random() * alphabet.length)],
        ).join("");
      const kinds = ["stdout", "stderr", "display", "figure", "clear", "clear-wait"] as const;

      for (let round = 0; round < 300; round++) {
        const maxOutputBytes = 200 + Math.floor(random() * 4_000);
        const maxEntryBytes = Math.min(maxOutputBytes, 200 + Math.floor(random() * maxOutputBytes));
        const iopub: JupyterMessage[] = [];
        for (let i = Math.floor(random() * 30); i > 0; i--) {
          const kind = kinds[Math.floor(random() * (kinds.length + 4)) % kinds.length];
          if (kind === "stdout" || kind === "stderr") iopub.push(stream(kind, text()));
          if (kind === "display") iopub.push(displayData({ "text/plain": text(), "text/html": text() }));
          if (kind === "figure")
            iopub.push(displayData({ "image/png": "Q".repeat(random() * 3_000), "text/plain": text() }));
          if (kind === "clear" || kind === "clear-wait") iopub.push(clearOutput(kind === "clear-wait"));
        }
        if (random() < 0.3) iopub.push(errorMessage("ValueError", text(), [text(), text(), text()]));
        iopub.push(idle());

        // Act
        const result = collect(iopub, okReply(1), { maxOutputBytes, maxEntryBytes }).result(1);
        const uncut = collect(iopub, okReply(1)).result(1);

        // Assess
        const where = `round ${round}`;
        assert.ok(responseBytes(result) <= maxOutputBytes + RESULT_OVERHEAD_BYTES, where);
        assert.ok(Buffer.byteLength(JSON.stringify(result)) <= maxOutputBytes + RESULT_OVERHEAD_BYTES, where);
        for (const entry of result.data) assert.ok(responseBytes(entry) <= maxEntryBytes, where);
        if (result.error) assert.ok(responseBytes(result.error) <= maxEntryBytes, where);
        // Output cut and later cleared leaves nothing to see, but `truncated` still says it happened.
        const cut = JSON.stringify([result.data, result.error]) !== JSON.stringify([uncut.data, uncut.error]);
        if (cut) assert.equal(result.truncated, true, where);
        for (const [index, entry] of result.data.entries()) {
          const kept = entry["text/plain"];
          if (typeof kept !== "string") continue;
          const whole = uncut.data.map((e) => String(e["text/plain"] ?? "")).find((t) => t.startsWith(kept));
          assert.ok(whole !== undefined, `${where}: entry ${index} is not the start of an output`);
          assert.ok(!endsInsidePair(kept, whole), `${where}: entry ${index} splits a surrogate pair`);
        }
      }
    });
  });
});

/** A small deterministic generator (mulberry32), so a failing round can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Whether `prefix`, a start of `whole`, ends between the two halves of a surrogate pair. */
function endsInsidePair(prefix: string, whole: string): boolean {
  const last = prefix.charCodeAt(prefix.length - 1);
  const next = whole.charCodeAt(prefix.length);
  return last >= 0xd800 && last <= 0xdbff && next >= 0xdc00 && next <= 0xdfff;
}
