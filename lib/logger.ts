import { Logger } from "@aws-lambda-powertools/logger";

/** The one structured logger; Powertools reads its level and sampling from the Lambda environment. */
export const logger = new Logger({ serviceName: "pybox" });
