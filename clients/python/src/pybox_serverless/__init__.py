"""pybox-serverless's Python client: pybox managers whose kernels live in the service.

from pybox_serverless import AsyncServerlessPyBoxManager
from tablegpt.tools import IPythonTool

tool = IPythonTool(pybox_manager=AsyncServerlessPyBoxManager(url, token=token), cwd=workdir)
"""

from ._events import RunEvent
from ._models import Artifact, FileEntry, FileInfo, FileListing, Kernel, QueuedRun, RunError, RunResult
from ._transport import BearerAuth, RetryPolicy, SigV4Auth
from .errors import KernelNotFoundError, PyboxServiceError
from .managers import (
    AsyncServerlessPyBox,
    AsyncServerlessPyBoxManager,
    ServerlessPyBox,
    ServerlessPyBoxManager,
)
from .mirror import DEFAULT_MIRROR_MAX_BYTES, WorkdirMirror

__all__ = [
    "DEFAULT_MIRROR_MAX_BYTES",
    "Artifact",
    "AsyncServerlessPyBox",
    "AsyncServerlessPyBoxManager",
    "BearerAuth",
    "FileEntry",
    "FileInfo",
    "FileListing",
    "Kernel",
    "KernelNotFoundError",
    "PyboxServiceError",
    "QueuedRun",
    "RetryPolicy",
    "RunError",
    "RunEvent",
    "RunResult",
    "ServerlessPyBox",
    "ServerlessPyBoxManager",
    "SigV4Auth",
    "WorkdirMirror",
]
