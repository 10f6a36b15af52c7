"""The service's replies, validated where they enter the client (the shapes of `openapi.json`)."""

from __future__ import annotations

import json
from typing import Literal

from pybox.schema import ErrorContent, PyBoxOut
from pydantic import BaseModel, ConfigDict


class _Reply(BaseModel):
    # A newer service may add fields; the client must keep working with the ones it knows.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Kernel(_Reply):
    """A kernel record, as `POST /kernels` and `GET /kernels/{kernelId}` answer it."""

    kernelId: str
    backend: str
    state: str
    createdAt: str
    lastActivityAt: str
    restarted: bool | None = None


class RunError(_Reply):
    """The exception a run ended in, as the kernel reported it."""

    ename: str
    evalue: str
    traceback: list[str]


class Artifact(_Reply):
    """A file under the kernel's working directory that the run created or changed."""

    path: str
    size: int
    mtime: str


class RunResult(_Reply):
    """Everything a run gave back: a superset of pybox's `PyBoxOut`."""

    status: Literal["ok", "error", "timeout"]
    data: list[dict[str, object]]
    error: RunError | None
    executionCount: int | None
    durationMs: int
    truncated: bool
    artifacts: list[Artifact] = []
    artifactsTruncated: bool | None = None
    restarted: bool | None = None

    def to_pybox_out(self) -> PyBoxOut:
        """pybox's own result type; values that are not strings (`application/json`) become JSON text,
        because `PyBoxOut.data` holds `dict[str, str]` and must never fail to build."""
        data = [
            {mime: value if isinstance(value, str) else json.dumps(value) for mime, value in bundle.items()}
            for bundle in self.data
        ]
        error = None if self.error is None else ErrorContent(**self.error.model_dump())
        return PyBoxOut(data=data, error=error)


class RunFailure(_Reply):
    """Why a queued run ended without a RunResult."""

    code: str
    message: str


class QueuedRun(_Reply):
    """A queued run (`POST …/runs`, `GET …/runs/{runId}`)."""

    runId: str
    kernelId: str
    status: Literal["queued", "running", "ok", "error", "timeout"]
    result: RunResult | None = None
    error: RunFailure | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has an outcome (a result or a failure)."""
        return self.status not in ("queued", "running")


class FileInfo(_Reply):
    """A file written into the kernel's working directory."""

    path: str
    size: int
    mtime: str
    sha256: str


class UploadProgress(_Reply):
    """A chunk of an upload is in; the next one starts at `received`."""

    path: str
    received: int


class FileEntry(_Reply):
    """One entry of a listing."""

    path: str
    size: int
    mtime: str
    kind: Literal["file", "dir"]


class FileListing(_Reply):
    """`GET /kernels/{kernelId}/files`."""

    files: list[FileEntry]
    truncated: bool
