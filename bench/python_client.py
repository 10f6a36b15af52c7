"""What the Python client and its working-directory mirror cost per run, side by side.

Driven by bench/python-client.ts, which serves the API and passes its URL. Interleaves, round by
round on kernels of one caller: a plain HTTP run (httpx, keep-alive, no client library), a run
through `ServerlessPyBoxManager` with no cwd, one with a 10-file cwd that did not change (the
mirror only looks), and one where one of those files changed before each run (one upload).
Prints one JSON object: the samples' p50/p95 in milliseconds.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from pybox_serverless import ServerlessPyBoxManager

if TYPE_CHECKING:
    from collections.abc import Callable

ROUNDS = 200
WARMUP = 20
CODE = "1+1"


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda p: ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]  # noqa: E731
    return {"n": len(samples), "p50": round(statistics.median(ordered), 2), "p95": round(pick(0.95), 2)}


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    base_url = sys.argv[1]
    token = "bench-python-client"
    with (
        tempfile.TemporaryDirectory() as scratch,
        ServerlessPyBoxManager(base_url, token=token, timeout=20) as manager,
    ):
        folder = Path(scratch)
        for index in range(10):
            (folder / f"table-{index}.csv").write_text(
                "a,b\n" + "\n".join(f"{i},{i * index}" for i in range(2000))
            )
        plain_http = httpx.Client(headers={"Authorization": f"Bearer {token}"})
        plain_http.post(f"{base_url}/kernels", json={"kernelId": "plain"}).raise_for_status()
        bare = manager.start("bare")
        mirrored = manager.start("mirrored", cwd=folder)
        changing = manager.start("changing", cwd=folder)

        def plain() -> None:
            plain_http.post(f"{base_url}/kernels/plain/run", json={"code": CODE}).raise_for_status()

        def change_one(round_: int) -> None:
            (folder / "table-0.csv").write_text(f"a,b\n{round_},0\n" + "x" * (round_ % 7))

        series: dict[str, list[float]] = {"plain_http": [], "client_no_cwd": [], "client_cwd_10_files": []}
        series["client_cwd_10_files_one_changed"] = []
        for round_ in range(WARMUP + ROUNDS):
            change_one(round_)
            figures = {
                "plain_http": timed(plain),
                "client_no_cwd": timed(lambda: bare.run(CODE)),
                "client_cwd_10_files_one_changed": timed(lambda: changing.run(CODE)),
            }
            # `mirrored` saw the same change: bring it up to date, then time a run with nothing to send.
            mirrored.run(CODE)
            figures["client_cwd_10_files"] = timed(lambda: mirrored.run(CODE))
            if round_ >= WARMUP:
                for name, value in figures.items():
                    series[name].append(value)
        for kernel_id in ("bare", "mirrored", "changing"):
            manager.shutdown(kernel_id)
        plain_http.delete(f"{base_url}/kernels/plain")
        plain_http.close()
    print(json.dumps({name: summary(samples) for name, samples in series.items()}))


if __name__ == "__main__":
    main()
