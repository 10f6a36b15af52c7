// Runs dynalite on a thread of its own, so its request handling never queues behind the API's
// work on the main event loop (as DynamoDB's own servers never would).
import { once } from "node:events";
import { parentPort, workerData } from "node:worker_threads";
import dynalite from "dynalite";

const server = dynalite({ ...workerData, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.listen(0, "127.0.0.1");
await once(server, "listening");
parentPort.postMessage({ port: server.address().port });
parentPort.on("message", (message) => {
  if (message === "close") {
    server.close(() => parentPort.postMessage("closed"));
    server.closeAllConnections();
  }
});
