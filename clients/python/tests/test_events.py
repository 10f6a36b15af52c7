"""Streamed runs as the client reads them: Server-Sent Events line by line."""

from __future__ import annotations

import httpx
import pytest

from pybox_serverless import PyboxServiceError, ServerlessPyBoxManager
from pybox_serverless._events import SseDecoder

KERNEL = {"kernelId": "k", "backend": "local", "state": "idle", "createdAt": "x", "lastActivityAt": "x"}


def test_decodes_events_and_their_json_data() -> None:
    decoder = SseDecoder()
    done = '{"status":"ok","data":[],"error":null,"executionCount":1,"durationMs":1,"truncated":false}'
    lines = ["event: stream", 'data: {"name":"stdout","text":"0\\n"}', "", "event: done", f"data: {done}", ""]
    events = [event for line in lines if (event := decoder.feed(line)) is not None]
    assert [event.event for event in events] == ["stream", "done"]
    assert events[0].data == {"name": "stdout", "text": "0\n"}
    assert events[0].result is None
    assert events[1].result is not None
    assert events[1].result.status == "ok"


def test_a_failed_event_raises_the_services_error() -> None:
    decoder = SseDecoder()
    decoder.feed("event: failed")
    decoder.feed('data: {"error":{"code":"KERNEL_DEAD","message":"kernel died"}}')
    with pytest.raises(PyboxServiceError) as raised:
        decoder.feed("")
    assert (raised.value.code, raised.value.message) == ("KERNEL_DEAD", "kernel died")


def test_box_stream_asks_for_events_and_yields_them_then_keeps_the_result() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        seen.append(request)
        body = (
            'event: stream\ndata: {"name":"stdout","text":"0\\n"}\n\n'
            'event: done\ndata: {"status":"ok","data":[{"text/plain":"0\\n"}],"error":null,'
            '"executionCount":1,"durationMs":3,"truncated":false,"artifacts":[]}\n\n'
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    box = ServerlessPyBoxManager("http://svc", session=client, mirror=False).start("k")
    events = list(box.stream("print(0)", timeout=5))
    assert [event.event for event in events] == ["stream", "done"]
    assert seen[0].headers["accept"] == "text/event-stream"
    assert seen[0].url.path == "/kernels/k/run"
    assert box.last_result is not None
    assert box.last_result.data == [{"text/plain": "0\n"}]


def test_box_stream_raises_a_refusal_before_the_run() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        return httpx.Response(409, json={"error": {"code": "KERNEL_BUSY", "message": "busy"}})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    box = ServerlessPyBoxManager("http://svc", session=client, mirror=False).start("k")
    with pytest.raises(PyboxServiceError) as raised:
        list(box.stream("1"))
    assert raised.value.code == "KERNEL_BUSY"


def test_box_stream_refuses_an_answer_that_is_not_events() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        return httpx.Response(200, json={"status": "ok"})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    box = ServerlessPyBoxManager("http://svc", session=client, mirror=False).start("k")
    with pytest.raises(PyboxServiceError) as raised:
        list(box.stream("1"))
    assert raised.value.code == "NOT_A_STREAM"


def test_box_stream_raises_when_the_answer_ends_before_done() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        body = 'event: stream\ndata: {"name":"stdout","text":"0\\n"}\n\n'
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    box = ServerlessPyBoxManager("http://svc", session=client, mirror=False).start("k")
    with pytest.raises(PyboxServiceError) as raised:
        list(box.stream("1"))
    assert raised.value.code == "STREAM_CUT"
