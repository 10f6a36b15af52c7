import { ensurePythonEnv } from "./python-env.ts";

/** `npm run setup:python`: prepares `.venv` (used by `.ci/run` and before integration tests). */
await ensurePythonEnv();
