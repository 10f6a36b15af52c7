import { type GatewayFlavour, startGateway } from "../support/gateway.ts";
import { startLocalApi } from "../support/local-api.ts";
import { describeBackendBehaviour } from "./behaviour.ts";

for (const flavour of ["enterprise", "jupyter_server"] as const satisfies GatewayFlavour[]) {
  describeBackendBehaviour(
    "gateway",
    async () => {
      const gateway = await startGateway(flavour);
      try {
        const server = await startLocalApi({
          PYBOX_BACKEND: "gateway",
          PYBOX_GATEWAY_URL: gateway.url,
          PYBOX_GATEWAY_TOKEN: gateway.token,
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
    {
      label: `gateway (${flavour})`,
      restartsDeadKernels: true,
      ignoresKernelEnv: flavour === "jupyter_server",
    },
  );
}
