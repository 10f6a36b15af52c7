"""What the client raises: the service's own error code and message, never a bare HTTP status."""

from __future__ import annotations


class PyboxServiceError(Exception):
    """The service answered with an error (`{"error": {"code", "message"}}`) or could not be reached
    sensibly. `code` is the service's error code (`NOT_FOUND`, `KERNEL_BUSY`, `CAPACITY`, …), so a
    caller can branch on it without parsing messages."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class KernelNotFoundError(PyboxServiceError):
    """The kernel (or file) does not exist for this caller: stopped, reaped, never made, or another's."""
