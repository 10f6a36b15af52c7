import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { JupyterMessage } from "../../../lib/jupyter/messages.ts";
import { RunCollector, type RunResult, stripAnsi } from "../../../lib/jupyter/run-result.ts";

const REQUEST_ID = "0b5cbb1e-7d1a-4f0e-9b7a-3c1a2d3e4f50";
const CAP = 1024 * 1024;

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
  options: { maxOutputBytes?: number; replyAfter?: number } = {},
): RunCollector {
  const collector = new RunCollector(options.maxOutputBytes ?? CAP);
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
      } satisfies RunResult);
    });
  });

  describe("done", () => {
    it("is done only once the reply has come after idle", () => {
      // Prepare
      const collector = new RunCollector(CAP);
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
      const collector = new RunCollector(CAP);
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
      const collector = new RunCollector(CAP);
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
      const result = collect(iopub, okReply(1), { maxOutputBytes: 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "abcdefghij" }]);
      assert.equal(result.truncated, false);
    });

    it("collects output again after clearing output that had been cut at the cap", () => {
      // Prepare
      const iopub = [stream("stdout", "0123456789AB"), clearOutput(true), stream("stdout", "done\n"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 10 }).result(1);

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
        JSON.stringify(result.data).length <= 100,
        `data is ${JSON.stringify(result.data).length} characters, over the cap of 100`,
      );
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
    it("cuts stream text at the cap, marks the result truncated and drops what follows", () => {
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
      const result = collect(iopub, okReply(1), { maxOutputBytes: 10 }).result(4);

      // Assess
      assert.deepEqual(result, {
        status: "ok",
        data: [{ "text/plain": "0123456789" }],
        error: null,
        executionCount: 1,
        durationMs: 4,
        truncated: true,
      } satisfies RunResult);
    });

    it("keeps text that exactly fills the cap without marking it truncated", () => {
      // Prepare
      const iopub = [stream("stdout", "12345"), stream("stderr", "67890"), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 10 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "12345" }, { "text/plain": "67890" }]);
      assert.equal(result.truncated, false);
    });

    it("drops a bundle that does not fit and every bundle after it", () => {
      // Prepare
      const first = { "text/plain": "ok" }; // 19 characters as JSON
      const second = { "text/plain": "too large for the room left" }; // 43
      const third = { "text/plain": "s" }; // 18: would fit after first, but comes after a drop
      const iopub = [displayData(first), displayData(second), displayData(third), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 40 }).result(1);

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "ok" }]);
      assert.equal(result.truncated, true);
    });

    it("keeps the error of a run whose output was cut", () => {
      // Prepare
      const iopub = [
        stream("stdout", "x".repeat(50)),
        errorMessage("ZeroDivisionError", "division by zero", ZERO_DIVISION_TRACEBACK),
        idle(),
      ];

      // Act
      const result = collect(iopub, errorReply(1, "ZeroDivisionError", "division by zero", []), {
        maxOutputBytes: 20,
      }).result(1);

      // Assess
      assert.equal(result.status, "error");
      assert.deepEqual(result.data, [{ "text/plain": "x".repeat(20) }]);
      assert.equal(result.truncated, true);
      assert.deepEqual(result.error?.traceback, ZERO_DIVISION_TRACEBACK_PLAIN);
    });

    it("counts the cap in UTF-8 bytes, as its name says, for text outside ASCII", () => {
      // Prepare
      const text = "é".repeat(10); // 10 characters, 20 UTF-8 bytes
      const iopub = [stream("stdout", text), idle()];

      // Act
      const result = collect(iopub, okReply(1), { maxOutputBytes: 10 }).result(1);

      // Assess
      const kept = String(result.data[0]?.["text/plain"] ?? "");
      assert.equal(result.truncated, true);
      assert.ok(Buffer.byteLength(kept, "utf8") <= 10, `kept ${Buffer.byteLength(kept, "utf8")} bytes`);
    });
  });
});
