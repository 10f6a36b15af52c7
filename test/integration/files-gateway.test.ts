import { startGateway } from "../support/gateway.ts";
import { startLocalApi } from "../support/local-api.ts";
import { describeFileBehaviour } from "./files-behaviour.ts";

describeFileBehaviour(
  "gateway",
  async (env) => {
    const gateway = await startGateway("enterprise");
    try {
      const server = await startLocalApi({
        PYBOX_BACKEND: "gateway",
        PYBOX_GATEWAY_URL: gateway.url,
        PYBOX_GATEWAY_TOKEN: gateway.token,
        ...env,
      });
      return {
        api: server.api,
        stop: async () => {
          await server.stop();
          await gateway.stop();
        },
      };
    } catch (error) {
      await gateway.stop();
      throw error;
    }
  },
  { label: "gateway (enterprise)" },
);
