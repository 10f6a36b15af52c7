import { LocalBackend } from "./backends/local.ts";
import type { Backend } from "./backends/port.ts";
import { type Config, getConfig } from "./config.ts";
import { SandboxService } from "./sandbox/service.ts";
import { createDocumentClient } from "./store/dynamodb.ts";
import { KernelStore } from "./store/kernel-store.ts";

/** The backend the configuration names. */
export function createBackend(config: Config): Backend {
  switch (config.backend) {
    case "local":
      return new LocalBackend({ ...config.local, startTimeoutMs: config.startTimeoutMs });
  }
}

/** Wires config, store and backend into the service; exported for tests and the dev server. */
export function createSandbox(config: Config): SandboxService {
  const store = new KernelStore(createDocumentClient(config.dynamodb), config.table, config.recordTtlSeconds);
  return new SandboxService(store, createBackend(config), {
    operatorEnv: config.operatorEnv,
    startTimeoutMs: config.startTimeoutMs,
    run: config.run,
  });
}

let sandbox: SandboxService | undefined;

/** The service of this container, built on first use (cold start) and reused by every invocation. */
export function getSandbox(): SandboxService {
  sandbox ??= createSandbox(getConfig());
  return sandbox;
}
