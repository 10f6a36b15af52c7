import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type Channel,
  type ConnectionInfo,
  ConnectionInfoSchema,
  channelUrl,
  hasAllPorts,
} from "../../../lib/jupyter/connection.ts";

/** A connection file as ipykernel writes it. */
function connectionFile(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    shell_port: 50001,
    iopub_port: 50002,
    stdin_port: 50003,
    control_port: 50004,
    hb_port: 50005,
    ip: "127.0.0.1",
    key: "a0436f6c-1916-498b-8eb9-e81ab9368e84",
    transport: "tcp",
    signature_scheme: "hmac-sha256",
    kernel_name: "python3",
    ...overrides,
  };
}

function parse(overrides: Record<string, unknown> = {}): ConnectionInfo {
  return ConnectionInfoSchema.parse(connectionFile(overrides));
}

const CHANNELS: readonly Channel[] = ["shell", "iopub", "stdin", "control", "hb"];

describe("connection", () => {
  describe("channelUrl", () => {
    it("builds a tcp endpoint for each channel from its own port", () => {
      // Prepare
      const info = parse();

      // Act
      const urls = CHANNELS.map((channel) => channelUrl(info, channel));

      // Assess
      assert.deepEqual(urls, [
        "tcp://127.0.0.1:50001",
        "tcp://127.0.0.1:50002",
        "tcp://127.0.0.1:50003",
        "tcp://127.0.0.1:50004",
        "tcp://127.0.0.1:50005",
      ]);
    });

    it("puts an IPv6 address in brackets", () => {
      // Prepare
      const info = parse({ ip: "::1" });

      // Act
      const url = channelUrl(info, "shell");

      // Assess
      assert.equal(url, "tcp://[::1]:50001");
    });

    it("puts a full IPv6 address in brackets", () => {
      // Prepare
      const info = parse({ ip: "fd00:ec2::23" });

      // Act
      const url = channelUrl(info, "iopub");

      // Assess
      assert.equal(url, "tcp://[fd00:ec2::23]:50002");
    });

    it("does not bracket an IPv6 address twice", () => {
      // Prepare
      const info = parse({ ip: "[::1]" });

      // Act
      const url = channelUrl(info, "control");

      // Assess
      assert.equal(url, "tcp://[::1]:50004");
    });

    it("leaves a host name unchanged", () => {
      // Prepare
      const info = parse({ ip: "kernel-7.pybox.svc.cluster.local" });

      // Act
      const url = channelUrl(info, "hb");

      // Assess
      assert.equal(url, "tcp://kernel-7.pybox.svc.cluster.local:50005");
    });

    it("follows jupyter_client's ipc://{ip}-{port} convention for ipc", () => {
      // Prepare
      const info = parse({ transport: "ipc", ip: "/tmp/pybox/kernel-1" });

      // Act
      const urls = CHANNELS.map((channel) => channelUrl(info, channel));

      // Assess
      assert.deepEqual(urls, [
        "ipc:///tmp/pybox/kernel-1-50001",
        "ipc:///tmp/pybox/kernel-1-50002",
        "ipc:///tmp/pybox/kernel-1-50003",
        "ipc:///tmp/pybox/kernel-1-50004",
        "ipc:///tmp/pybox/kernel-1-50005",
      ]);
    });

    it("uses the relative ipc path as written, small port numbers included", () => {
      // Prepare
      const info = parse({ transport: "ipc", ip: "kernel-ipc", shell_port: 1 });

      // Act
      const url = channelUrl(info, "shell");

      // Assess
      assert.equal(url, "ipc://kernel-ipc-1");
    });
  });

  describe("ConnectionInfoSchema", () => {
    it("accepts a connection file as ipykernel writes it", () => {
      // Prepare
      const file = connectionFile();

      // Act
      const info = ConnectionInfoSchema.parse(file);

      // Assess
      assert.deepEqual(info, {
        transport: "tcp",
        ip: "127.0.0.1",
        shell_port: 50001,
        iopub_port: 50002,
        stdin_port: 50003,
        control_port: 50004,
        hb_port: 50005,
        key: "a0436f6c-1916-498b-8eb9-e81ab9368e84",
        signature_scheme: "hmac-sha256",
        kernel_name: "python3",
      });
    });

    it("defaults the transport to tcp and the scheme to hmac-sha256", () => {
      // Prepare
      const {
        transport: _transport,
        signature_scheme: _scheme,
        kernel_name: _name,
        ...file
      } = connectionFile();

      // Act
      const info = ConnectionInfoSchema.parse(file);

      // Assess
      assert.equal(info.transport, "tcp");
      assert.equal(info.signature_scheme, "hmac-sha256");
      assert.equal(info.kernel_name, undefined);
    });

    it("accepts port 0, which asks the kernel to pick its own port", () => {
      // Prepare
      const file = connectionFile({ shell_port: 0, hb_port: 65535 });

      // Act
      const info = ConnectionInfoSchema.parse(file);

      // Assess
      assert.equal(info.shell_port, 0);
      assert.equal(info.hb_port, 65535);
    });

    it("drops fields it does not know", () => {
      // Prepare
      const file = connectionFile({ jupyter_session: "/tmp/x.ipynb" });

      // Act
      const info = ConnectionInfoSchema.parse(file);

      // Assess
      assert.equal("jupyter_session" in info, false);
    });

    for (const [label, overrides] of [
      ["a port above 65535", { shell_port: 65536 }],
      ["a negative port", { iopub_port: -1 }],
      ["a fractional port", { stdin_port: 5000.5 }],
      ["a port given as a string", { control_port: "50004" }],
      ["a missing port", { hb_port: undefined }],
    ] as const) {
      it(`rejects ${label}`, () => {
        // Prepare
        const file = connectionFile(overrides);

        // Act
        const parsed = ConnectionInfoSchema.safeParse(file);

        // Assess
        assert.equal(parsed.success, false);
        assert.deepEqual(
          parsed.error?.issues.map((issue) => issue.path),
          [Object.keys(overrides)],
        );
      });
    }

    it("rejects a file without a key", () => {
      // Prepare
      const { key: _key, ...file } = connectionFile();

      // Act
      const parsed = ConnectionInfoSchema.safeParse(file);

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["key"]],
      );
    });

    it("rejects an empty key, which would leave messages unsigned", () => {
      // Prepare
      const file = connectionFile({ key: "" });

      // Act
      const parsed = ConnectionInfoSchema.safeParse(file);

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["key"]],
      );
    });

    it("rejects a signature scheme other than hmac-sha256", () => {
      // Prepare
      const file = connectionFile({ signature_scheme: "hmac-md5" });

      // Act
      const parsed = ConnectionInfoSchema.safeParse(file);

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["signature_scheme"]],
      );
    });

    it("rejects an unknown transport", () => {
      // Prepare
      const file = connectionFile({ transport: "udp" });

      // Act
      const parsed = ConnectionInfoSchema.safeParse(file);

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["transport"]],
      );
    });

    it("rejects an empty ip", () => {
      // Prepare
      const file = connectionFile({ ip: "" });

      // Act
      const parsed = ConnectionInfoSchema.safeParse(file);

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["ip"]],
      );
    });
  });

  describe("hasAllPorts", () => {
    it("is true when every port is bound", () => {
      // Prepare
      const info = parse();

      // Act
      const ready = hasAllPorts(info);

      // Assess
      assert.equal(ready, true);
    });

    for (const channel of CHANNELS) {
      it(`is false while the ${channel} port is still 0`, () => {
        // Prepare
        const info = parse({ [`${channel}_port`]: 0 });

        // Act
        const ready = hasAllPorts(info);

        // Assess
        assert.equal(ready, false);
      });
    }
  });
});
