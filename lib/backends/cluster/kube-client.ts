/**
 * The parts of `@kubernetes/client-node` the cluster backend uses, behind one module that
 * `kube-auth.ts` imports dynamically: the client (and `undici` under it) is then evaluated on the
 * first call to the API, not at every function's init, and the bundler still keeps only these.
 */
export { CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
