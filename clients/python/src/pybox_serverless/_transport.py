"""How requests reach the service: authentication, retries on 429/503 and error translation.

The policy is written once here as plain functions; the sync and async managers differ only in
whether they `await` the send.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpx

from .errors import KernelNotFoundError, PyboxServiceError

if TYPE_CHECKING:
    from collections.abc import Generator, Mapping

#: HTTP statuses the service uses for "nothing happened, try again" (CAPACITY, *_UNAVAILABLE).
RETRYABLE_STATUSES = frozenset({429, 503})

#: Most a single wait between attempts may last, whatever `Retry-After` says.
MAX_RETRY_WAIT_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a refused request is sent again."""

    attempts: int = 5
    base_delay_s: float = 0.25

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """The wait before attempt `attempt + 1`: the server's `Retry-After` when it gave one, else
        exponential backoff with full jitter."""
        if response is not None and (after := retry_after(response)) is not None:
            return min(after, MAX_RETRY_WAIT_S)
        return random.uniform(0, min(self.base_delay_s * 2**attempt, MAX_RETRY_WAIT_S))


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the service sends delta-seconds), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


#: Refusals that waiting does not change (a deployment that serves another caller only).
FINAL_CODES = frozenset({"HOST_SHARED"})


def should_retry(response: httpx.Response) -> bool:
    """Whether the service said the request changed nothing and may simply be sent again."""
    return response.status_code in RETRYABLE_STATUSES and _error_code(response) not in FINAL_CODES


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else None


def raise_for_error(response: httpx.Response) -> None:
    """Turns an error reply into a `PyboxServiceError` carrying the service's code and message."""
    if response.status_code < 400:
        return
    code, message = "HTTP_ERROR", response.reason_phrase or "request failed"
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code", code))
            message = str(error.get("message", message))
        elif isinstance(body, dict) and isinstance(body.get("message"), str):
            # API Gateway's own refusals (`{"message": "Forbidden"}`) before our function runs.
            message = body["message"]
    except ValueError:
        pass
    cls = KernelNotFoundError if response.status_code == 404 else PyboxServiceError
    raise cls(response.status_code, code, message, retry_after(response))


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`: the dev server and JWT authorizers."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Adds the header to every request."""
        request.headers["Authorization"] = self._header
        yield request


_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
#: A Lambda Function URL (the stack's `StreamUrl`): signed for the `lambda` service.
_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


class SigV4Auth(httpx.Auth):
    """Signs each request for the `execute-api` service (or `lambda`, for the stack's streaming
    Function URL) with botocore's credential chain (env, profile, SSO, instance or task role): the
    default IAM-authorized deployment."""

    requires_request_body = True

    def __init__(self, base_url: str, region: str | None = None) -> None:
        try:
            import botocore.session
        except ImportError as error:  # pragma: no cover - depends on the install
            raise ImportError('auth="sigv4" needs botocore: pip install "pybox-serverless[aws]"') from error
        self._session = botocore.session.get_session()
        host = urlsplit(base_url).hostname or ""
        function_url = _FUNCTION_URL_HOST.match(host)
        self._service = "lambda" if function_url else "execute-api"
        match = function_url or _EXECUTE_API_HOST.match(host)
        self._region = (
            region or (match.group(1) if match else None) or self._session.get_config_variable("region")
        )
        if not self._region:
            raise ValueError(
                "auth='sigv4' needs a region: an execute-api URL, AWS_REGION or a profile's region"
            )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Signs method, URL, headers and body; the signature covers the exact bytes sent."""
        from botocore.auth import SigV4Auth as BotocoreSigV4
        from botocore.awsrequest import AWSRequest

        credentials = self._session.get_credentials()
        if credentials is None:
            raise PyboxServiceError(401, "UNAUTHENTICATED", "no AWS credentials found for SigV4 signing")
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={
                k: v for k, v in request.headers.items() if k.lower() not in ("connection", "user-agent")
            },
        )
        BotocoreSigV4(credentials.get_frozen_credentials(), self._service, self._region).add_auth(signed)
        for name, value in signed.headers.items():
            request.headers[name] = value
        yield request


AuthSetting = Literal["sigv4"] | httpx.Auth | None


def make_auth(base_url: str, token: str | None, auth: AuthSetting) -> httpx.Auth | None:
    """One authentication from the constructor's `token=` and `auth=` (never both)."""
    if token is not None and auth is not None:
        raise ValueError("pass token= or auth=, not both")
    if token is not None:
        return BearerAuth(token)
    if auth == "sigv4":
        return SigV4Auth(base_url)
    if auth is None or isinstance(auth, httpx.Auth):
        return auth
    raise ValueError(f"auth must be 'sigv4', an httpx.Auth or None, not {auth!r}")


def quote_path(path: str) -> str:
    """A relative file path for the URL, each segment percent-encoded (so `/` inside a name cannot
    happen and `..` is never smuggled past the server's checks)."""
    from urllib.parse import quote

    return "/".join(quote(segment, safe="") for segment in path.split("/"))


def chunk_ranges(total: int, chunk: int) -> list[tuple[int, int]]:
    """Inclusive byte ranges `(first, last)` covering `total` bytes in pieces of at most `chunk`."""
    return [(start, min(start + chunk, total) - 1) for start in range(0, total, chunk)]


def headers_of(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Default headers of every request."""
    return {"Accept": "application/json", **(extra or {})}
