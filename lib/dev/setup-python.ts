import {
  CLIENT_ENV,
  ensurePythonEnv,
  GATEWAY_ENV,
  KERNEL_ENV,
  RIG_KERNEL_ENV,
  RIG_MONITOR_ENV,
  TABLEGPT_KERNEL_ENV,
  TOOLS_ENV,
} from "./python-env.ts";

/**
 * `npm run setup:python`: prepares every project-local Python environment the tests and the bench
 * use (the kernel env and the tablegpt preset's, Enterprise Gateway, jupyter_server and pybox, and
 * tablegpt-agent with the project's Python client, and the cluster rig's kernel and monitor images). `npm test` calls it.
 */
for (const env of [
  KERNEL_ENV,
  TABLEGPT_KERNEL_ENV,
  GATEWAY_ENV,
  TOOLS_ENV,
  CLIENT_ENV,
  RIG_KERNEL_ENV,
  RIG_MONITOR_ENV,
])
  await ensurePythonEnv(env);
