/**
 * What a caller may put into a kernel's environment. Callers are agents running model-written
 * code: they may pass ordinary variables, but nothing that picks images, users, volumes or
 * interpreters, and nothing that loads code into the kernel before ours runs.
 */

/** Shape of a caller-supplied variable name. */
export const CALLER_ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** Most variables one start may pass. */
export const MAX_CALLER_ENV_ENTRIES = 64;

/** Longest value one variable may have. */
export const MAX_CALLER_ENV_VALUE = 4_096;

const RESERVED_PREFIXES = [
  "KERNEL_",
  "PYBOX_",
  "AWS_",
  "LD_",
  "DYLD_",
  "PYTHON",
  "JPY_",
  "JUPYTER",
  "IPYTHON",
  "EG_",
  // Read by glibc itself in every process a backend starts, some of them before it drops its rights.
  "GLIBC_",
  "MALLOC_",
  "GCONV",
];
const RESERVED_NAMES = new Set([
  "PATH",
  "HOME",
  "PWD",
  "SHELL",
  "USER",
  "LOGNAME",
  "TMPDIR",
  "MPLCONFIGDIR",
  "LOCPATH",
  "NLSPATH",
  "HOSTALIASES",
  "RES_OPTIONS",
  "LOCALDOMAIN",
  "TZDIR",
]);

/** Why a caller may not set `key`, or undefined when it may. */
export function reservedEnvReason(key: string): string | undefined {
  const upper = key.toUpperCase();
  if (RESERVED_NAMES.has(upper)) return `${key} is set by the sandbox`;
  const prefix = RESERVED_PREFIXES.find((p) => upper.startsWith(p));
  return prefix ? `variables starting with ${prefix} are operator configuration` : undefined;
}

/**
 * Variables read once, when a process or a native library starts (locale, thread pools of BLAS and
 * OpenMP, matplotlib's backend), that a caller may set. A kernel of the warm pool started before
 * its caller's env was known, so a start that sets one of them starts cold instead.
 */
const START_ONLY = /^(LANG|LANGUAGE|LC_[A-Z]+|MPLBACKEND|(OMP|OPENBLAS|MKL|NUMEXPR|VECLIB|GOTO)_[A-Z0-9_]+)$/;

/** The first of `env`'s variables only a process start takes in, or undefined. */
export function startOnlyVariable(env: Record<string, string> = {}): string | undefined {
  return Object.keys(env).find((name) => START_ONLY.test(name.toUpperCase()));
}
