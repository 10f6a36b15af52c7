"""pybox's own RemotePyBox.run, driven line by line from bench/gateway.ts so both run side by side.

Reads JSON lines {"code": ...} on stdin and answers each with {"ms": ..., "ok": ...}: the time of one
RemotePyBox.run on the gateway kernel given on the command line (the same kernel our path uses).
"""

import json
import sys
import time

from pybox import RemotePyBox
from pybox.schema import Kernel


def main() -> None:
    host, token, kernel_id = sys.argv[1], sys.argv[2], sys.argv[3]
    # pybox has no token option; the gateway also takes the token as a query parameter.
    ws_url = host.replace("http", "ws", 1).rstrip("/") + f"/api/kernels/{kernel_id}/channels?token={token}"
    box = RemotePyBox(Kernel.model_construct(id=kernel_id, name="python3"), ws_url)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        out = box.run(request["code"])
        elapsed = (time.perf_counter() - started) * 1000
        print(json.dumps({"ms": elapsed, "ok": out.error is None and len(out.data) > 0}), flush=True)


if __name__ == "__main__":
    main()
