"""How the acceptance tests call tablegpt-agent's tool, and read what it gives the model."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybox_serverless import AsyncServerlessPyBoxManager, ServerlessPyBoxManager

if TYPE_CHECKING:
    from tablegpt.tools import IPythonTool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Agent:
    """One tablegpt tool bound to a manager, called the way tablegpt's ToolNode calls it."""

    tool: IPythonTool
    mode: str

    async def call(self, code: str) -> tuple[list[Any], list[Any]]:
        if self.mode == "sync":
            return await asyncio.to_thread(self.tool._run, code)
        return await self.tool._arun(code)


def texts(content: list[Any] | str) -> str:
    """Everything the model reads as text."""
    if isinstance(content, str):
        return content
    return "\n".join(
        part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text"
    )


def images(content: list[Any] | str) -> list[bytes]:
    """The images the model is shown, decoded."""
    if isinstance(content, str):
        return []
    prefix = "data:image/png;base64,"
    return [
        base64.b64decode(part["image_url"]["url"][len(prefix) :])
        for part in content
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def make_manager(mode: str, base_url: str, token: str, timeout: float):
    cls = ServerlessPyBoxManager if mode == "sync" else AsyncServerlessPyBoxManager
    return cls(base_url, token=token, timeout=timeout)


async def stop(manager: Any, session_id: str) -> None:
    if isinstance(manager, AsyncServerlessPyBoxManager):
        await manager.shutdown(session_id)
        await manager.aclose()
    else:
        await asyncio.to_thread(manager.shutdown, session_id)
        manager.close()
