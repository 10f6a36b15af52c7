"""Every operation of the client, written once, without I/O.

An operation is a generator: it yields a `Call` (one HTTP request) or a `Sleep`, receives the
`httpx.Response` for a call, and returns its result. The sync and async managers drive the same
generators, one with `httpx.Client`, the other with `httpx.AsyncClient`, so the two can never
drift apart in behaviour.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ._models import FileInfo, FileListing, Kernel, QueuedRun, RunResult, UploadProgress
from ._transport import chunk_ranges, quote_path
from .errors import PyboxServiceError
from .mirror import WorkdirMirror, write_atomically

logger = logging.getLogger("pybox_serverless")

#: The longest run the synchronous route serves (`SYNC_RUN_LIMIT_MS` of the service); longer runs
#: go through the queue (`POST …/runs`) transparently.
SYNC_RUN_LIMIT_S = 20.0

#: pybox's own per-run default.
DEFAULT_RUN_TIMEOUT_S = 300.0

#: Bytes per file request each way: a Lambda payload is 6 MB and binary bodies travel as base64.
FILE_CHUNK_BYTES = 4 * 1024 * 1024

#: Time a synchronous run's HTTP request gets beyond the run's own timeout: the service's
#: interrupt, restart and answer (the HTTP invocation ends at 29 s).
SYNC_HEADROOM_S = 12.0

#: Time a queued run gets beyond its timeout to be picked up and reported.
QUEUE_HEADROOM_S = 120.0

#: Timeout of requests that are not runs (start may launch a kernel: seconds on a cluster).
REQUEST_TIMEOUT_S = 60.0

#: How long one read of a queued run waits for its end on the service (its `waitMs`).
RESULT_WAIT_S = 20.0

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request, relative to the service's base URL."""

    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = REQUEST_TIMEOUT_S


@dataclass(frozen=True)
class Sleep:
    """A pause between polls of a queued run."""

    seconds: float


Step = Call | Sleep
Operation = Generator[Step, httpx.Response | None, T]


def _kernel_path(kernel_id: str) -> str:
    return f"/kernels/{quote_path(kernel_id)}"


def start(
    kernel_id: str | None, cwd: str | None, env: dict[str, str] | None
) -> Operation[tuple[Kernel, bool]]:
    """Get-or-create: the caller's live kernel of that id (200) or a new one (201)."""
    body: dict[str, Any] = {}
    if kernel_id is not None:
        body["kernelId"] = kernel_id
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["env"] = env
    response = yield Call("POST", "/kernels", json=body)
    assert response is not None
    return Kernel.model_validate(response.json()), response.status_code == 201


def stop(kernel_id: str) -> Operation[None]:
    """Stops the kernel; a kernel already gone is success."""
    yield Call("DELETE", _kernel_path(kernel_id))


def get(kernel_id: str) -> Operation[Kernel]:
    """The kernel's record."""
    response = yield Call("GET", _kernel_path(kernel_id))
    assert response is not None
    return Kernel.model_validate(response.json())


def run(kernel_id: str, code: str, timeout_s: float) -> Operation[RunResult]:
    """Runs code; synchronously when the timeout fits the synchronous route, else queued."""
    timeout_ms = max(1, round(timeout_s * 1000))
    if timeout_s <= SYNC_RUN_LIMIT_S:
        response = yield Call(
            "POST",
            f"{_kernel_path(kernel_id)}/run",
            json={"code": code, "timeoutMs": timeout_ms},
            timeout_s=timeout_s + SYNC_HEADROOM_S,
        )
        assert response is not None
        return RunResult.model_validate(response.json())
    return (yield from _queued_run(kernel_id, code, timeout_ms, timeout_s + QUEUE_HEADROOM_S))


def _queued_run(kernel_id: str, code: str, timeout_ms: int, wait_s: float) -> Operation[RunResult]:
    # The client names the run, so a retried submit is the same run, never a second one.
    run_id = str(uuid.uuid4())
    response = yield Call(
        "POST",
        f"{_kernel_path(kernel_id)}/runs",
        json={"code": code, "timeoutMs": timeout_ms, "runId": run_id},
    )
    assert response is not None
    view = QueuedRun.model_validate(response.json())
    # Long polls: the service answers when the run ends (or after RESULT_WAIT_S). A service that
    # answers an unfinished run sooner (one without long polls) is asked again after a backoff.
    deadline, delay = time.monotonic() + wait_s, 0.05
    while not view.finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queued run {run_id} had no result after {wait_s:.0f} s")
        asked = time.monotonic()
        wait = max(0.001, min(RESULT_WAIT_S, deadline - asked))
        response = yield Call(
            "GET",
            f"{_kernel_path(kernel_id)}/runs/{run_id}",
            params={"waitMs": str(round(wait * 1000))},
            timeout_s=wait + REQUEST_TIMEOUT_S,
        )
        assert response is not None
        view = QueuedRun.model_validate(response.json())
        if not view.finished and time.monotonic() - asked < wait / 2:
            yield Sleep(delay)
            delay = min(delay * 2, 1.0)
    if view.result is not None:
        return view.result
    failure = view.error
    raise PyboxServiceError(
        409,
        failure.code if failure else "RUN_LOST",
        failure.message if failure else "the run ended without a result",
    )


def upload(kernel_id: str, path: str, data: bytes) -> Operation[FileInfo]:
    """Writes a file into the kernel's working directory, in chunks when it is larger than one request."""
    url = f"{_kernel_path(kernel_id)}/files/{quote_path(path)}"
    headers = {"Content-Type": "application/octet-stream"}
    if len(data) <= FILE_CHUNK_BYTES:
        response = yield Call("PUT", url, content=data, headers=headers)
        assert response is not None
        return FileInfo.model_validate(response.json())
    total = len(data)
    for first, last in chunk_ranges(total, FILE_CHUNK_BYTES):
        response = yield Call(
            "PUT",
            url,
            content=data[first : last + 1],
            headers={**headers, "Content-Range": f"bytes {first}-{last}/{total}"},
        )
        assert response is not None
        if response.status_code != 202:
            return FileInfo.model_validate(response.json())
        UploadProgress.model_validate(response.json())
    raise PyboxServiceError(502, "BACKEND_ERROR", f"upload of {path} ended without the file's info")


def download(kernel_id: str, path: str, size: int | None = None) -> Operation[bytes]:
    """A file's bytes: in one response when it fits, else in ranges (the service answers a whole
    file larger than one response with 413)."""
    url = f"{_kernel_path(kernel_id)}/files/{quote_path(path)}"
    if size is None or size <= FILE_CHUNK_BYTES:
        try:
            response = yield Call("GET", url, headers={"Accept": "*/*"})
        except PyboxServiceError as error:
            if error.code != "PAYLOAD_TOO_LARGE":
                raise
        else:
            assert response is not None
            return response.content
    parts: list[bytes] = []
    first, total = 0, size
    while total is None or first < total:
        last = first + FILE_CHUNK_BYTES - 1
        response = yield Call("GET", url, headers={"Accept": "*/*", "Range": f"bytes={first}-{last}"})
        assert response is not None
        if response.status_code == 200:
            return response.content  # the server sent it whole
        if not response.content:
            break
        parts.append(response.content)
        total = _total_of(response.headers.get("content-range"))
        first += len(response.content)
    return b"".join(parts)


def _total_of(content_range: str | None) -> int:
    if content_range is None or "/" not in content_range:
        raise PyboxServiceError(502, "BACKEND_ERROR", "a ranged read came back without Content-Range")
    return int(content_range.rsplit("/", 1)[1])


def list_files(kernel_id: str, path: str = "", recursive: bool = False) -> Operation[FileListing]:
    """A listing of the kernel's working directory (or a folder of it)."""
    params = {"recursive": "true" if recursive else "false"}
    if path:
        params["path"] = path
    response = yield Call("GET", f"{_kernel_path(kernel_id)}/files", params=params)
    assert response is not None
    return FileListing.model_validate(response.json())


def remove(kernel_id: str, path: str) -> Operation[None]:
    """Deletes a file."""
    yield Call("DELETE", f"{_kernel_path(kernel_id)}/files/{quote_path(path)}")


def mirrored_run(
    kernel_id: str, code: str, timeout_s: float, mirror: WorkdirMirror | None
) -> Operation[RunResult]:
    """A run with the working-directory mirror around it: local changes up first, the run's
    artifacts down into the local folder before the result is returned."""
    yield from mirror_up(kernel_id, mirror)
    result = yield from run(kernel_id, code, timeout_s)
    yield from mirror_down(kernel_id, mirror, result)
    return result


def mirror_up(kernel_id: str, mirror: WorkdirMirror | None) -> Operation[None]:
    """Uploads the local files new or changed since they were last sent (before a run)."""
    if mirror is None:
        return
    for file in mirror.pending_uploads():
        try:
            yield from upload(kernel_id, file.relative, file.path.read_bytes())
        except PyboxServiceError as error:
            if error.code != "PAYLOAD_TOO_LARGE":
                raise
            logger.warning("not uploading %s: %s", file.relative, error.message)
            mirror.synced[file.relative] = (file.size, file.mtime_ns)  # don't retry it every run
            continue
        mirror.synced[file.relative] = (file.size, file.mtime_ns)


def mirror_down(kernel_id: str, mirror: WorkdirMirror | None, result: RunResult) -> Operation[None]:
    """Downloads the run's artifacts into the local folder (after a run)."""
    if mirror is None or not result.artifacts:
        return
    sizes = [(artifact.path, artifact.size) for artifact in result.artifacts]
    for relative in mirror.downloads_within_bound(sizes):
        target = mirror.local_target(relative)
        if target is None:
            continue
        size = next(size for name, size in sizes if name == relative)
        data = yield from download(kernel_id, relative, size)
        write_atomically(target, data)
        mirror.mark_synced(relative)
