import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The rig's self-made certificates and keys, as files. */
export interface RigPki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** `system:masters`: the rig itself, its kubelet double, and nobody under test. */
  adminCert: string;
  adminKey: string;
  /** kube-controller-manager's own identity (`system:kube-controller-manager`). */
  controllerManagerCert: string;
  controllerManagerKey: string;
  /** Signs and verifies ServiceAccount tokens. */
  serviceAccountKey: string;
  serviceAccountPub: string;
}

async function openssl(args: string[]): Promise<void> {
  await run("openssl", args);
}

async function key(path: string): Promise<void> {
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path]);
}

/** A certificate signed by the rig's CA, for a client (`clientAuth`) or the API server (`serverAuth`). */
async function signed(
  dir: string,
  name: string,
  subject: string,
  usage: "clientAuth" | "serverAuth",
  ca: { cert: string; key: string },
  altNames: string[] = [],
): Promise<{ cert: string; key: string }> {
  const keyFile = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  await key(keyFile);
  await openssl(["req", "-new", "-key", keyFile, "-subj", subject, "-out", csr]);
  const lines = [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usage}`,
    ...(altNames.length > 0 ? [`subjectAltName=${altNames.join(",")}`] : []),
  ];
  await writeFile(ext, `${lines.join("\n")}\n`);
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-days",
    "7",
    "-sha256",
    "-extfile",
    ext,
    "-out",
    cert,
  ]);
  return { cert, key: keyFile };
}

/**
 * Makes a CA, the API server's serving certificate (valid for 127.0.0.1 and `serviceIps`, the
 * addresses pods reach it at), client certificates for the admin and kube-controller-manager, and
 * the ServiceAccount signing key.
 */
export async function makePki(dir: string, serviceIps: string[]): Promise<RigPki> {
  const caKey = join(dir, "ca.key");
  const caCert = join(dir, "ca.crt");
  await key(caKey);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    caKey,
    "-subj",
    "/CN=pybox-rig-ca",
    "-days",
    "7",
    "-out",
    caCert,
  ]);
  const ca = { cert: caCert, key: caKey };
  const server = await signed(dir, "apiserver", "/CN=kube-apiserver", "serverAuth", ca, [
    "IP:127.0.0.1",
    ...serviceIps.map((ip) => `IP:${ip}`),
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
  ]);
  const admin = await signed(dir, "admin", "/O=system:masters/CN=pybox-rig-admin", "clientAuth", ca);
  const kcm = await signed(dir, "kcm", "/CN=system:kube-controller-manager", "clientAuth", ca);
  const serviceAccountKey = join(dir, "sa.key");
  const serviceAccountPub = join(dir, "sa.pub");
  await openssl([
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
    "-out",
    serviceAccountKey,
  ]);
  await openssl(["pkey", "-in", serviceAccountKey, "-pubout", "-out", serviceAccountPub]);
  return {
    caCert,
    caKey,
    serverCert: server.cert,
    serverKey: server.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    controllerManagerCert: kcm.cert,
    controllerManagerKey: kcm.key,
    serviceAccountKey,
    serviceAccountPub,
  };
}
