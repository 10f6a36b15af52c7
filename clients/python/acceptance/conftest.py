"""The acceptance suite's fixtures: a running service (`PYBOX_URL`), callers, and local working folders.

The suite is started by `test/integration/python-client.test.ts`, which serves the API with
`npm start`'s entry on a free port (local kernels, or a real Enterprise Gateway) and points
`PYBOX_URL` at it. Each test is its own caller (a bearer token under `npm start`), so tests never
see each other's kernels.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pybox_serverless import AsyncServerlessPyBoxManager, ServerlessPyBoxManager

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("PYBOX_URL")
    if not url:
        pytest.exit("PYBOX_URL must name a running pybox-serverless API (npm start)", returncode=2)
    return url


@pytest.fixture
def caller() -> str:
    return f"acceptance-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The agent's local folder with the user's tables, as tablegpt-agent's `cwd`."""
    folder = tmp_path / "agent-cwd"
    folder.mkdir()
    pd.DataFrame(
        {
            "region": ["north", "south", "east", "west"],
            "units": [120, 80, 150, 95],
            "price": [2.5, 3.0, 2.0, 4.0],
        }
    ).to_csv(folder / "sales.csv", index=False)
    return folder


@pytest.fixture
def manager(base_url: str, caller: str) -> Iterator[ServerlessPyBoxManager]:
    with ServerlessPyBoxManager(base_url, token=caller, timeout=15) as sync_manager:
        yield sync_manager


@pytest.fixture
async def async_manager(base_url: str, caller: str) -> AsyncIterator[AsyncServerlessPyBoxManager]:
    async with AsyncServerlessPyBoxManager(base_url, token=caller, timeout=15) as manager:
        yield manager
