import { ensureElasticMq } from "./elasticmq.ts";

/**
 * `npm run setup:elasticmq`: installs ElasticMQ (the tests' local SQS API) into `.pybox/elasticmq`
 * from Maven Central, once; later runs only check the marker. `npm run test:integration` and
 * `.ci/run` call it, so a fresh clone needs nothing but Java and Maven.
 */
try {
  const install = await ensureElasticMq();
  console.log(
    install.installed
      ? `Installed ElasticMQ ${install.version} (${install.jars} jars) into ${install.dir} in ${(install.ms / 1000).toFixed(1)} s.`
      : `ElasticMQ ${install.version} already installed in ${install.dir}.`,
  );
} catch (error) {
  console.error(`setup:elasticmq failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
