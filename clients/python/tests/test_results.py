"""RunResult → pybox's PyBoxOut, and the transport's retry and error rules, without a server."""

from __future__ import annotations

import json

import httpx
import pytest

from pybox_serverless import (
    KernelNotFoundError,
    PyboxServiceError,
    RetryPolicy,
    RunResult,
    ServerlessPyBoxManager,
)


def result(**fields: object) -> RunResult:
    base = {
        "status": "ok",
        "data": [],
        "error": None,
        "executionCount": 1,
        "durationMs": 3,
        "truncated": False,
    }
    return RunResult.model_validate({**base, **fields, "artifacts": fields.get("artifacts", [])})


def test_pybox_out_keeps_strings_and_serialises_the_rest() -> None:
    out = result(
        data=[{"text/plain": "3"}, {"application/json": {"a": [1, 2]}, "text/plain": "{'a': [1, 2]}"}]
    )
    assert out.to_pybox_out().data == [
        {"text/plain": "3"},
        {"application/json": '{"a": [1, 2]}', "text/plain": "{'a': [1, 2]}"},
    ]


def test_pybox_out_carries_the_error_as_pybox_does() -> None:
    error = {
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
        "traceback": ["Traceback", "ZeroDivisionError"],
    }
    out = result(status="error", error=error).to_pybox_out()
    assert out.error is not None
    assert out.error.ename == "ZeroDivisionError"
    assert str(out.error) == "Traceback\nZeroDivisionError"


def test_unknown_fields_from_a_newer_service_are_ignored() -> None:
    assert result(newField=1).status == "ok"


def manager_with(handler, attempts: int = 3) -> ServerlessPyBoxManager:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return ServerlessPyBoxManager(
        "http://service.test",
        token="t",
        timeout=5,
        session=client,
        retry=RetryPolicy(attempts=attempts, base_delay_s=0.001),
    )


KERNEL = {"kernelId": "k", "backend": "local", "state": "idle", "createdAt": "x", "lastActivityAt": "x"}


def test_retries_429_and_503_honouring_retry_after() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if len(seen) == 1:
            return httpx.Response(
                429, headers={"retry-after": "0"}, json={"error": {"code": "CAPACITY", "message": "full"}}
            )
        if len(seen) == 2:
            return httpx.Response(
                503,
                headers={"retry-after": "0"},
                json={"error": {"code": "STORE_UNAVAILABLE", "message": "x"}},
            )
        return httpx.Response(201, json=KERNEL)

    box = manager_with(handler).start("k")
    assert box.kernel_id == "k"
    assert seen == ["Bearer t"] * 3


def test_gives_up_with_the_services_code_after_the_last_attempt() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429, headers={"retry-after": "0"}, json={"error": {"code": "CAPACITY", "message": "full"}}
        )

    with pytest.raises(PyboxServiceError) as raised:
        manager_with(handler, attempts=2).start("k")
    assert (raised.value.status, raised.value.code, raised.value.message) == (429, "CAPACITY", "full")


def test_a_deployment_serving_another_caller_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            503,
            headers={"retry-after": "0"},
            json={"error": {"code": "HOST_SHARED", "message": "this deployment serves one caller only"}},
        )

    with pytest.raises(PyboxServiceError) as raised:
        manager_with(handler, attempts=5).start("k")
    assert (raised.value.status, raised.value.code) == (503, "HOST_SHARED")
    assert calls == 1


def test_a_client_error_is_not_retried_and_404_is_its_own_type() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "no kernel k"}})

    with pytest.raises(KernelNotFoundError) as raised:
        manager_with(handler).get("k")
    assert raised.value.code == "NOT_FOUND"
    assert calls == 1


def test_a_timeout_result_raises_timeout_error_as_pybox_promises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        body = {
            "status": "timeout",
            "data": [],
            "executionCount": None,
            "durationMs": 2000,
            "truncated": False,
            "artifacts": [],
            "error": {"ename": "TimeoutError", "evalue": "", "traceback": []},
        }
        return httpx.Response(200, json=body)

    box = manager_with(handler).start("k")
    with pytest.raises(TimeoutError):
        box.run("while True: pass")
    assert box.last_result is not None
    assert box.last_result.status == "timeout"


def test_a_reply_that_breaks_the_contract_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"kernelId": "k"})

    with pytest.raises(PyboxServiceError) as raised:
        manager_with(handler).start("k")
    assert raised.value.code == "UNEXPECTED_REPLY"


def test_a_long_run_is_queued_and_its_end_read_with_a_long_poll() -> None:
    reads: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/kernels":
            return httpx.Response(201, json=KERNEL)
        run_id = request.url.path.rsplit("/", 1)[-1]
        view = {"runId": run_id, "kernelId": "k", "createdAt": "x"}
        if request.method == "POST":
            body = json.loads(request.content)
            return httpx.Response(202, json={**view, "runId": body["runId"], "status": "queued"})
        reads.append(request)
        result = {"status": "ok", "data": [{"text/plain": "42"}], "error": None, "executionCount": 1}
        return httpx.Response(
            200, json={**view, "status": "ok", "result": {**result, "durationMs": 1, "truncated": False}}
        )

    manager = ServerlessPyBoxManager(
        "http://service.test",
        timeout=60,
        session=httpx.Client(transport=httpx.MockTransport(handler)),
        mirror=False,
    )
    box = manager.start("k")
    assert box.run_result("1").data == [{"text/plain": "42"}]
    assert len(reads) == 1
    assert reads[0].url.params["waitMs"] == "20000"
