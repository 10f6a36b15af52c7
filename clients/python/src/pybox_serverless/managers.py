"""pybox managers for pybox-serverless: what tablegpt-agent's `IPythonTool(pybox_manager=…)` takes.

`ServerlessPyBoxManager` is sync, `AsyncServerlessPyBoxManager` has coroutine `start`/`shutdown`
and boxes whose `run` is a coroutine, as pybox's own remote managers. Both drive the operations of
`_protocol` over httpx, with one retry policy and one error translation.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pybox.base import BasePyBox, BasePyBoxManager
from pydantic import ValidationError

from . import _protocol as ops
from ._events import SseDecoder, check_stream, cut_short, stream_call
from ._protocol import DEFAULT_RUN_TIMEOUT_S, Call, Operation, Sleep
from ._transport import AuthSetting, RetryPolicy, headers_of, make_auth, raise_for_error, should_retry
from .errors import PyboxServiceError
from .mirror import DEFAULT_MIRROR_MAX_BYTES, WorkdirMirror, local_folder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from pybox.schema import PyBoxOut

    from ._events import RunEvent
    from ._models import FileInfo, FileListing, Kernel, RunResult

T = TypeVar("T")

#: Connection errors: the request never reached the service, so sending it again is safe.
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


class _Settings:
    """What both managers are built from, checked once in the constructor."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float | None,
        auth: AuthSetting,
        mirror: bool,
        mirror_max_bytes: int,
        retry: RetryPolicy | None,
        stream_url: str | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.base_url = base_url.rstrip("/")
        #: Where streamed runs go: the stack's Function URL on AWS, the API itself under `npm start`.
        self.stream_url = (stream_url or base_url).rstrip("/")
        self.stream_auth = make_auth(self.stream_url, token, auth) if stream_url else None
        self.timeout_s = DEFAULT_RUN_TIMEOUT_S if timeout is None else float(timeout)
        self.auth = make_auth(self.base_url, token, auth)
        self.mirror = mirror
        self.mirror_max_bytes = mirror_max_bytes
        self.retry = retry or RetryPolicy()
        self.mirrors: dict[str, WorkdirMirror] = {}

    def request(
        self, client: httpx.Client | httpx.AsyncClient, call: Call, base_url: str | None = None
    ) -> httpx.Request:
        return client.build_request(
            call.method,
            (base_url or self.base_url) + call.path,
            json=call.json,
            content=call.content,
            params=call.params,
            headers=headers_of(call.headers),
            timeout=httpx.Timeout(call.timeout_s, connect=10.0),
        )

    def mirror_for(
        self, kernel: Kernel, created: bool, cwd: str | os.PathLike[str] | None
    ) -> WorkdirMirror | None:
        """The kernel's mirror state; a kernel made by this start has none of the local files yet."""
        folder = local_folder(cwd) if self.mirror else None
        if folder is None:
            self.mirrors.pop(kernel.kernelId, None)
            return None
        known = self.mirrors.get(kernel.kernelId)
        if created or known is None or known.root != folder:
            known = WorkdirMirror(folder, self.mirror_max_bytes)
            self.mirrors[kernel.kernelId] = known
        return known

    def start_args(self, cwd: str | os.PathLike[str] | None) -> str | None:
        """The cwd the service is told: never a local folder we mirror, else the caller's text."""
        if cwd is None or (self.mirror and local_folder(cwd) is not None):
            return None
        return os.fspath(cwd)


def _drive_sync(settings: _Settings, client: httpx.Client, operation: Operation[T]) -> T:
    try:
        step = next(operation)
        while True:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = operation.send(None)
                continue
            try:
                response = _send_sync(settings, client, step)
            except PyboxServiceError as error:
                step = operation.throw(error)
                continue
            step = operation.send(response)
    except StopIteration as done:
        return done.value
    except (ValidationError, json.JSONDecodeError) as error:
        raise _unexpected_reply(error) from error


def _send_sync(settings: _Settings, client: httpx.Client, call: Call) -> httpx.Response:
    policy = settings.retry
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        try:
            response = client.send(settings.request(client, call), auth=settings.auth)
        except _CONNECT_ERRORS as error:
            if last:
                raise PyboxServiceError(
                    0, "UNREACHABLE", f"cannot reach {settings.base_url}: {error}"
                ) from error
            time.sleep(policy.delay(attempt, None))
            continue
        if should_retry(response) and not last:
            time.sleep(policy.delay(attempt, response))
            continue
        raise_for_error(response)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


async def _drive_async(settings: _Settings, client: httpx.AsyncClient, operation: Operation[T]) -> T:
    try:
        step = next(operation)
        while True:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = operation.send(None)
                continue
            try:
                response = await _send_async(settings, client, step)
            except PyboxServiceError as error:
                step = operation.throw(error)
                continue
            step = operation.send(response)
    except StopIteration as done:
        return done.value
    except (ValidationError, json.JSONDecodeError) as error:
        raise _unexpected_reply(error) from error


async def _send_async(settings: _Settings, client: httpx.AsyncClient, call: Call) -> httpx.Response:
    policy = settings.retry
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        try:
            response = await client.send(settings.request(client, call), auth=settings.auth)
        except _CONNECT_ERRORS as error:
            if last:
                raise PyboxServiceError(
                    0, "UNREACHABLE", f"cannot reach {settings.base_url}: {error}"
                ) from error
            await asyncio.sleep(policy.delay(attempt, None))
            continue
        if should_retry(response) and not last:
            await asyncio.sleep(policy.delay(attempt, response))
            continue
        raise_for_error(response)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def _unexpected_reply(error: ValueError) -> PyboxServiceError:
    """A reply that is not what `openapi.json` promises: a proxy's page, or a service version apart."""
    return PyboxServiceError(502, "UNEXPECTED_REPLY", f"the service's reply did not match its API: {error}")


def _out_of(result: RunResult, timeout_s: float) -> PyBoxOut:
    """pybox's contract: a run past its timeout raises `TimeoutError` (the kernel was interrupted
    and stays usable); anything else is a `PyBoxOut`."""
    if result.status == "timeout":
        raise TimeoutError(f"the run did not finish within {timeout_s:g} s; the kernel was interrupted")
    return result.to_pybox_out()


class ServerlessPyBox(BasePyBox):
    """One kernel of the service; `run` blocks until the code finished (or timed out)."""

    def __init__(self, manager: ServerlessPyBoxManager, kernel: Kernel, mirror: WorkdirMirror | None) -> None:
        super().__init__()
        self._manager = manager
        self.kernel = kernel
        self.kernel_id = kernel.kernelId
        self.mirror = mirror
        #: The full RunResult of the latest `run` (status, artifacts, truncated, …).
        self.last_result: RunResult | None = None

    def run(self, code: str, **kwargs: Any) -> PyBoxOut:
        """Runs code as pybox does; raises `TimeoutError` past the manager's timeout."""
        result = self.run_result(code, **kwargs)
        return _out_of(result, kwargs.get("timeout") or self._manager.timeout)

    def run_result(self, code: str, timeout: float | None = None) -> RunResult:
        """Runs code and returns the service's whole RunResult; a timeout is a result, not an error."""
        timeout_s = timeout or self._manager.timeout
        result = self._manager._drive(ops.mirrored_run(self.kernel_id, code, timeout_s, self.mirror))
        self.last_result = result
        return result

    def stream(self, code: str, timeout: float | None = None) -> Iterator[RunEvent]:
        """Runs code and yields its outputs as the kernel produces them, then `done` with the whole
        RunResult, with the working-directory mirror around it as `run` has. A streamed run has the
        synchronous route's limits (20 s). Leaving the loop early hangs up; a run that has shown
        output is then interrupted."""
        manager = self._manager
        settings, client = manager._settings, manager._client
        manager._drive(ops.mirror_up(self.kernel_id, self.mirror))
        request = settings.request(
            client, stream_call(self.kernel_id, code, timeout or manager.timeout), settings.stream_url
        )
        response = client.send(request, auth=settings.stream_auth or settings.auth, stream=True)
        result: RunResult | None = None
        try:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response)
            check_stream(response.headers.get("content-type"))
            decoder = SseDecoder()
            for line in response.iter_lines():
                event = decoder.feed(line)
                if event is not None:
                    result = event.result or result
                    yield event
            if result is None:
                raise cut_short()
        finally:
            response.close()
        self.last_result = result
        manager._drive(ops.mirror_down(self.kernel_id, self.mirror, result))

    def upload(self, path: str, data: bytes) -> FileInfo:
        """Writes a file into the kernel's working directory."""
        return self._manager._drive(ops.upload(self.kernel_id, path, data))

    def download(self, path: str) -> bytes:
        """Reads a file of the kernel's working directory."""
        return self._manager._drive(ops.download(self.kernel_id, path))

    def list_files(self, path: str = "", recursive: bool = False) -> FileListing:
        """Lists the kernel's working directory (or a folder of it)."""
        return self._manager._drive(ops.list_files(self.kernel_id, path, recursive))

    def remove(self, path: str) -> None:
        """Deletes a file of the kernel's working directory."""
        self._manager._drive(ops.remove(self.kernel_id, path))


class ServerlessPyBoxManager(BasePyBoxManager):
    """A pybox manager whose kernels live in pybox-serverless.

    `timeout` is the per-run timeout in seconds (pybox's 300 s by default); runs longer than the
    synchronous route allows go through the run queue without the caller noticing. `token` sends a
    bearer token; `auth="sigv4"` signs with botocore's credential chain for `execute-api`.
    `mirror` (on by default) keeps a local `cwd` folder and the kernel's working directory in step.
    `stream_url` is where `box.stream` goes: the stack's `StreamUrl` on AWS (signed for `lambda`
    with `auth="sigv4"`); by default the API itself, as under `npm start`.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float | None = None,
        *,
        auth: AuthSetting = None,
        session: httpx.Client | None = None,
        mirror: bool = True,
        mirror_max_bytes: int = DEFAULT_MIRROR_MAX_BYTES,
        retry: RetryPolicy | None = None,
        stream_url: str | None = None,
    ) -> None:
        super().__init__()
        self._settings = _Settings(
            base_url, token, timeout, auth, mirror, mirror_max_bytes, retry, stream_url
        )
        self._client = session or httpx.Client()
        self._owns_client = session is None

    @property
    def timeout(self) -> float:
        """The per-run timeout, seconds."""
        return self._settings.timeout_s

    def _drive(self, operation: Operation[T]) -> T:
        return _drive_sync(self._settings, self._client, operation)

    def start(
        self,
        kernel_id: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> ServerlessPyBox:
        """The caller's kernel of that id, made when it does not exist (a new id each call when None)."""
        kernel, created = self._drive(ops.start(kernel_id, self._settings.start_args(cwd), env))
        return ServerlessPyBox(self, kernel, self._settings.mirror_for(kernel, created, cwd))

    def get(self, kernel_id: str) -> Kernel:
        """The kernel's record (`KernelNotFoundError` when there is none for this caller)."""
        return self._drive(ops.get(kernel_id))

    def shutdown(self, kernel_id: str, **kwargs: Any) -> None:
        """Stops the kernel; stopping one that is already gone is not an error."""
        self._drive(ops.stop(kernel_id))
        self._settings.mirrors.pop(kernel_id, None)

    def close(self) -> None:
        """Closes the HTTP connections this manager opened (not a `session=` passed in)."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> ServerlessPyBoxManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServerlessPyBox(BasePyBox):
    """One kernel of the service, for asyncio agents: `run` is a coroutine."""

    def __init__(
        self, manager: AsyncServerlessPyBoxManager, kernel: Kernel, mirror: WorkdirMirror | None
    ) -> None:
        super().__init__()
        self._manager = manager
        self.kernel = kernel
        self.kernel_id = kernel.kernelId
        self.mirror = mirror
        #: The full RunResult of the latest `run` (status, artifacts, truncated, …).
        self.last_result: RunResult | None = None

    async def run(self, code: str, **kwargs: Any) -> PyBoxOut:  # type: ignore[override]
        """Runs code as pybox's async box does; raises `TimeoutError` past the manager's timeout."""
        result = await self.run_result(code, **kwargs)
        return _out_of(result, kwargs.get("timeout") or self._manager.timeout)

    async def run_result(self, code: str, timeout: float | None = None) -> RunResult:
        """Runs code and returns the service's whole RunResult; a timeout is a result, not an error."""
        timeout_s = timeout or self._manager.timeout
        result = await self._manager._drive(ops.mirrored_run(self.kernel_id, code, timeout_s, self.mirror))
        self.last_result = result
        return result

    async def stream(self, code: str, timeout: float | None = None) -> AsyncIterator[RunEvent]:
        """Runs code and yields its outputs as the kernel produces them, then `done` with the whole
        RunResult (see `ServerlessPyBox.stream`)."""
        manager = self._manager
        settings, client = manager._settings, manager._client
        await manager._drive(ops.mirror_up(self.kernel_id, self.mirror))
        request = settings.request(
            client, stream_call(self.kernel_id, code, timeout or manager.timeout), settings.stream_url
        )
        response = await client.send(request, auth=settings.stream_auth or settings.auth, stream=True)
        result: RunResult | None = None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_error(response)
            check_stream(response.headers.get("content-type"))
            decoder = SseDecoder()
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is not None:
                    result = event.result or result
                    yield event
            if result is None:
                raise cut_short()
        finally:
            await response.aclose()
        self.last_result = result
        await manager._drive(ops.mirror_down(self.kernel_id, self.mirror, result))

    async def upload(self, path: str, data: bytes) -> FileInfo:
        """Writes a file into the kernel's working directory."""
        return await self._manager._drive(ops.upload(self.kernel_id, path, data))

    async def download(self, path: str) -> bytes:
        """Reads a file of the kernel's working directory."""
        return await self._manager._drive(ops.download(self.kernel_id, path))

    async def list_files(self, path: str = "", recursive: bool = False) -> FileListing:
        """Lists the kernel's working directory (or a folder of it)."""
        return await self._manager._drive(ops.list_files(self.kernel_id, path, recursive))

    async def remove(self, path: str) -> None:
        """Deletes a file of the kernel's working directory."""
        await self._manager._drive(ops.remove(self.kernel_id, path))


class AsyncServerlessPyBoxManager(BasePyBoxManager):
    """The asyncio form of `ServerlessPyBoxManager`, with the same constructor: `start` and
    `shutdown` are coroutines, as in pybox's `AsyncRemotePyBoxManager`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float | None = None,
        *,
        auth: AuthSetting = None,
        session: httpx.AsyncClient | None = None,
        mirror: bool = True,
        mirror_max_bytes: int = DEFAULT_MIRROR_MAX_BYTES,
        retry: RetryPolicy | None = None,
        stream_url: str | None = None,
    ) -> None:
        super().__init__()
        self._settings = _Settings(
            base_url, token, timeout, auth, mirror, mirror_max_bytes, retry, stream_url
        )
        self._client = session or httpx.AsyncClient()
        self._owns_client = session is None

    @property
    def timeout(self) -> float:
        """The per-run timeout, seconds."""
        return self._settings.timeout_s

    async def _drive(self, operation: Operation[T]) -> T:
        return await _drive_async(self._settings, self._client, operation)

    async def start(  # type: ignore[override]
        self,
        kernel_id: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> AsyncServerlessPyBox:
        """The caller's kernel of that id, made when it does not exist (a new id each call when None)."""
        kernel, created = await self._drive(ops.start(kernel_id, self._settings.start_args(cwd), env))
        return AsyncServerlessPyBox(self, kernel, self._settings.mirror_for(kernel, created, cwd))

    async def get(self, kernel_id: str) -> Kernel:
        """The kernel's record (`KernelNotFoundError` when there is none for this caller)."""
        return await self._drive(ops.get(kernel_id))

    async def shutdown(self, kernel_id: str, **kwargs: Any) -> None:  # type: ignore[override]
        """Stops the kernel; stopping one that is already gone is not an error."""
        await self._drive(ops.stop(kernel_id))
        self._settings.mirrors.pop(kernel_id, None)

    async def aclose(self) -> None:
        """Closes the HTTP connections this manager opened (not a `session=` passed in)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> AsyncServerlessPyBoxManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
