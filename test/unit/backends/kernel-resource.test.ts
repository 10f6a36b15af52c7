import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadAllYaml } from "@kubernetes/client-node";
import {
  announcedPortClash,
  KERNEL_HOME,
  KERNEL_PORT_RANGE,
  KERNEL_SECURITY_CONTEXT,
  KERNEL_TERMINATION_GRACE_SECONDS,
  kernelManifest,
  launchFailure,
} from "../../../lib/backends/cluster/kernel-resource.ts";
import { PROJECT_ROOT } from "../../../lib/config.ts";
import { ConfigError, ValidationError } from "../../../lib/errors.ts";

const RESOURCES = { cpu: "500m", memory: "2Gi", "ephemeral-storage": "1Gi" };

/** A manifest with the backend's usual inputs and `env` as the operator's and caller's variables. */
function manifest(env: Record<string, string> = {}, workingDir?: string) {
  return kernelManifest({
    ...(workingDir === undefined ? {} : { workingDir }),
    name: "alice-0d9af09d",
    namespace: "kernels",
    kernelId: "0d9af09d-d3d6-4386-aba6-e2d5aaa1b67d",
    username: "alice",
    image: "elyra/kernel-py:3.2.3",
    env,
    idleTimeoutSeconds: 3600,
    cullingIntervalSeconds: 60,
    resources: RESOURCES,
    serviceAccount: "pybox-kernel-monitor",
  });
}

describe("kernelManifest", () => {
  it("always sets the idle timeout and the culling interval (without the interval the monitor spins)", () => {
    const { spec } = manifest();

    assert.equal(spec.idleTimeoutSeconds, 3600);
    assert.equal(spec.cullingIntervalSeconds, 60);
  });

  it("runs the kernel's code as a non-root user with no way to gain privileges", () => {
    const [main] = manifest().spec.template.spec.containers;

    assert.deepEqual(main?.securityContext, { ...KERNEL_SECURITY_CONTEXT, readOnlyRootFilesystem: true });
    assert.equal(main?.securityContext.runAsNonRoot, true);
    assert.ok((main?.securityContext.runAsUser ?? 0) > 0, "a numeric non-root uid: image users may be names");
    assert.equal(main?.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(main?.securityContext.capabilities.drop, ["ALL"]);
    assert.equal(main?.securityContext.seccompProfile.type, "RuntimeDefault");
  });

  it("shadows the ServiceAccount token in the kernel's container with an empty read-only volume", () => {
    const pod = manifest().spec.template.spec;
    const mount = pod.containers[0]?.volumeMounts.find(
      (m) => m.mountPath === "/var/run/secrets/kubernetes.io/serviceaccount",
    );

    assert.equal(mount && "readOnly" in mount ? mount.readOnly : undefined, true);
    const volume = pod.volumes.find((v) => v.name === mount?.name);
    assert.ok(volume && "emptyDir" in volume, "an emptyDir, not the token");
  });

  it("bounds the kernel container with equal requests and limits, from config", () => {
    const [main] = manifest().spec.template.spec.containers;

    assert.deepEqual(main?.resources, { requests: RESOURCES, limits: RESOURCES });
  });

  it("gives a deleted pod a short grace period, keeps Services out of its env, and seccomp for all", () => {
    const pod = manifest().spec.template.spec;

    assert.equal(pod.terminationGracePeriodSeconds, KERNEL_TERMINATION_GRACE_SECONDS);
    assert.ok(KERNEL_TERMINATION_GRACE_SECONDS <= 10);
    assert.equal(pod.enableServiceLinks, false);
    assert.deepEqual(pod.securityContext, { seccompProfile: { type: "RuntimeDefault" } });
    assert.equal(pod.restartPolicy, "Never");
  });

  it("keeps the operator's volumes and mounts beside the token's shadow", () => {
    const pod = manifest({
      KERNEL_VOLUMES: JSON.stringify([{ name: "data", persistentVolumeClaim: { claimName: "shared" } }]),
      KERNEL_VOLUME_MOUNTS: JSON.stringify([{ name: "data", mountPath: "/data" }]),
    }).spec.template.spec;

    assert.deepEqual(
      pod.volumes.map((v) => v.name),
      ["data", "pybox-home", "pybox-tmp", "pybox-no-service-account-token"],
    );
    assert.deepEqual(
      pod.containers[0]?.volumeMounts.map((m) => m.mountPath),
      ["/data", KERNEL_HOME, "/tmp", "/var/run/secrets/kubernetes.io/serviceaccount"],
    );
    const names = pod.containers[0]?.env.map((e) => e.name) ?? [];
    assert.ok(!names.includes("KERNEL_VOLUMES") && !names.includes("KERNEL_VOLUME_MOUNTS"));
  });

  it("keeps the root read-only with the home, /tmp and the working dir writable scratch volumes", () => {
    const home = manifest().spec.template.spec.containers[0];
    assert.equal(home?.securityContext.readOnlyRootFilesystem, true);
    assert.equal(home?.workingDir, KERNEL_HOME);

    const pod = manifest({}, "/work/analysis").spec.template.spec;
    const mounts = pod.containers[0]?.volumeMounts.map((m) => m.mountPath);
    assert.deepEqual(mounts, [
      KERNEL_HOME,
      "/tmp",
      "/work/analysis",
      "/var/run/secrets/kubernetes.io/serviceaccount",
    ]);
    assert.equal(pod.containers[0]?.workingDir, "/work/analysis");
    assert.ok(pod.volumes.every((v) => "emptyDir" in v));
  });

  it("gives a working dir under the home or /tmp its own writable volume, and none at exactly them", () => {
    for (const cwd of [`${KERNEL_HOME}/project`, "/tmp/job"]) {
      const pod = manifest({}, cwd).spec.template.spec;
      const work = pod.containers[0]?.volumeMounts.find((m) => m.name === "pybox-work");
      assert.equal(
        work?.mountPath,
        cwd,
        "a runtime would make a missing dir as root, unwritable by uid 1000",
      );
    }
    for (const cwd of [KERNEL_HOME, "/tmp"]) {
      const pod = manifest({}, cwd).spec.template.spec;
      assert.ok(!pod.volumes.some((v) => v.name === "pybox-work"), cwd);
    }
  });

  it("needs no extra volume for a working dir on an operator's mount", () => {
    const onData = manifest(
      {
        KERNEL_VOLUMES: JSON.stringify([{ name: "data", persistentVolumeClaim: { claimName: "shared" } }]),
        KERNEL_VOLUME_MOUNTS: JSON.stringify([{ name: "data", mountPath: "/data" }]),
      },
      "/data/team",
    ).spec.template.spec;
    assert.ok(!onData.volumes.some((v) => v.name === "pybox-work"));
  });

  it("runs the pod as the monitor's ServiceAccount and pins the kernel's ports for NetworkPolicy", () => {
    const pod = manifest({ PORT_RANGE: "0..0" }).spec.template.spec;

    assert.equal(pod.serviceAccountName, "pybox-kernel-monitor");
    const range = pod.containers[0]?.env.find((e) => e.name === "PORT_RANGE")?.value;
    assert.equal(range, `${KERNEL_PORT_RANGE.first}..${KERNEL_PORT_RANGE.last}`, "ours wins over a caller's");
  });

  it("admits the functions to exactly the pinned ports in the shipped NetworkPolicy", async () => {
    const file = join(PROJECT_ROOT, "deploy", "cluster", "manifests", "50-network-policies.yaml");
    const policies = loadAllYaml(await readFile(file, "utf8")) as {
      spec: { ingress?: { ports?: { port?: number; endPort?: number }[] }[] };
    }[];
    const ports = policies.flatMap((p) => p.spec.ingress ?? []).flatMap((rule) => rule.ports ?? []);
    assert.deepEqual(
      ports.map((p) => ({ ...p })),
      [{ protocol: "TCP", port: KERNEL_PORT_RANGE.first, endPort: KERNEL_PORT_RANGE.last }],
    );
    assert.ok(
      KERNEL_PORT_RANGE.last - KERNEL_PORT_RANGE.first >= 1000,
      "the launcher refuses a range under 1000",
    );
  });

  it("puts no labels under spec.template.metadata, which the controller's CRD prunes", () => {
    const kernel = manifest();

    assert.ok(!("metadata" in kernel.spec.template));
    assert.equal(kernel.metadata.labels["app.kubernetes.io/managed-by"], "pybox-serverless");
  });

  it("gives every mount one path, however the cwd is spelled", () => {
    for (const cwd of [
      "/tmp",
      "/tmp/",
      "/tmp/job/",
      "/home/jovyan/",
      "/home/jovyan/../jovyan/x",
      "/work/a/",
    ]) {
      const pod = manifest({}, cwd).spec.template.spec;
      const paths = pod.containers[0]?.volumeMounts.map((m) => m.mountPath) ?? [];
      assert.equal(new Set(paths).size, paths.length, `unique mount paths for ${cwd}`);
    }
    assert.equal(manifest({}, "/work/a/").spec.template.spec.containers[0]?.workingDir, "/work/a");
  });

  it("refuses a cwd on the ServiceAccount token's shadow", () => {
    assert.throws(() => manifest({}, "/var/run/secrets/kubernetes.io/serviceaccount"), ValidationError);
    assert.throws(() => manifest({}, "/var/run/secrets/kubernetes.io/serviceaccount/x/.."), ValidationError);
  });

  it("refuses operator volumes that are not a JSON array of objects", () => {
    assert.throws(() => manifest({ KERNEL_VOLUMES: "{" }), ConfigError);
    assert.throws(() => manifest({ KERNEL_VOLUMES: '"x"' }), ConfigError);
  });
});

describe("announcedPortClash", () => {
  const announced = (ports: Record<string, number>) =>
    JSON.stringify({
      shell_port: 40367,
      iopub_port: 40936,
      stdin_port: 40737,
      control_port: 40451,
      hb_port: 40286,
      ip: "0.0.0.0",
      key: "k",
      ...ports,
    });

  it("names the port EG's launcher drew twice (its comm port repeating a kernel port)", () => {
    assert.equal(announcedPortClash(announced({ comm_port: 40936 })), 40936);
    assert.equal(announcedPortClash(announced({ hb_port: 40367, comm_port: 41000 })), 40367);
  });

  it("finds nothing in a sound connection, one without a comm port, or text that is not one", () => {
    assert.equal(announcedPortClash(announced({ comm_port: 40999 })), undefined);
    assert.equal(announcedPortClash(announced({})), undefined);
    assert.equal(announcedPortClash("not json"), undefined);
    assert.equal(announcedPortClash(JSON.stringify({ shell_port: 1 })), undefined);
  });
});

describe("launchFailure", () => {
  const kernel = (containerState: Record<string, unknown>, phase = "Pending") => ({
    metadata: { name: "k" },
    status: { phase, containerState },
  });

  it("waits out a first pull error that may pass, and not one the registry refused", () => {
    assert.equal(
      launchFailure(kernel({ waiting: { reason: "ErrImagePull", message: "429 Too Many Requests" } })),
      undefined,
    );
    assert.match(
      launchFailure(kernel({ waiting: { reason: "ErrImagePull", message: "manifest unknown" } })) ?? "",
      /^ErrImagePull: manifest unknown/,
    );
    assert.match(
      launchFailure(kernel({ waiting: { reason: "ImagePullBackOff" } })) ?? "",
      /ImagePullBackOff/,
    );
  });

  it("waits out what the kubelet retries, and names an exited container and a failed pod", () => {
    assert.equal(launchFailure(kernel({ waiting: { reason: "CreateContainerError" } })), undefined);
    assert.equal(launchFailure(kernel({ waiting: { reason: "ContainerCreating" } })), undefined);
    assert.match(
      launchFailure(kernel({ terminated: { exitCode: 1, reason: "Error" } })) ?? "",
      /exited with code 1/,
    );
    assert.match(launchFailure(kernel({}, "Failed")) ?? "", /the kernel pod failed/);
  });
});
