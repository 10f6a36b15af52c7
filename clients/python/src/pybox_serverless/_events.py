"""Streamed runs: Server-Sent Events read line by line into `RunEvent`s, the same way for the sync
and the async manager."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._models import RunResult
from ._protocol import SYNC_RUN_LIMIT_S, Call, _kernel_path
from .errors import PyboxServiceError


@dataclass(frozen=True)
class RunEvent:
    """One event of a streamed run, as the kernel produced it.

    `event` is `stream` (`data`: `name`, `text`), `display` or `result` (`data`: `data`, a MIME
    bundle), `error` (`data`: `ename`, `evalue`, `traceback`), and last `done`, whose `result` is
    the whole RunResult.
    """

    event: str
    data: dict[str, Any]

    @property
    def result(self) -> RunResult | None:
        """The RunResult of a `done` event, else None."""
        return RunResult.model_validate(self.data) if self.event == "done" else None


class SseDecoder:
    """Turns the lines of a `text/event-stream` body into events; a `failed` event raises."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> RunEvent | None:
        """Takes one line (without its end); returns the event a blank line completes."""
        if line == "":
            if not self._data:
                return None
            event, data = self._event, json.loads("\n".join(self._data))
            self._event, self._data = "message", []
            if event == "failed":
                error = data.get("error", {}) if isinstance(data, dict) else {}
                raise PyboxServiceError(
                    200, str(error.get("code", "FAILED")), str(error.get("message", "the run failed"))
                )
            return RunEvent(event, data if isinstance(data, dict) else {"value": data})
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


def stream_call(kernel_id: str, code: str, timeout_s: float | None) -> Call:
    """The request of a streamed run: the synchronous route's limit applies (20 s); a longer
    timeout, or none, leaves the service's default."""
    body: dict[str, Any] = {"code": code}
    if timeout_s is not None and timeout_s <= SYNC_RUN_LIMIT_S:
        body["timeoutMs"] = max(1, round(timeout_s * 1000))
    return Call(
        "POST",
        f"{_kernel_path(kernel_id)}/run",
        json=body,
        headers={"Accept": "text/event-stream"},
        timeout_s=SYNC_RUN_LIMIT_S + 15.0,
    )


def check_stream(content_type: str | None) -> None:
    """A streamed run's answer must be events: a JSON answer means the request reached a route that
    cannot stream (on AWS, the HTTP API instead of the stack's `StreamUrl`)."""
    if not (content_type or "").startswith("text/event-stream"):
        raise PyboxServiceError(
            502,
            "NOT_A_STREAM",
            "the service answered a streamed run without events; "
            "on AWS pass the stack's StreamUrl as stream_url",
        )


def cut_short() -> PyboxServiceError:
    """The error of a stream that ended before its `done` event (a timeout or a dropped connection)."""
    return PyboxServiceError(502, "STREAM_CUT", "the streamed run's answer ended before its result")
