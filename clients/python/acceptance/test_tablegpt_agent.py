"""tablegpt-agent's own `IPythonTool`, unchanged, running its code through pybox-serverless.

Every check is what an agent developer would look at: what the model is shown (the tool's
content), which files the agent finds afterwards (the tool's artifacts, the local folder), and
that one session is one kernel. Each runs with the sync manager (`_run`, in a worker thread) and
the async manager (`_arun`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from tablegpt.tools import IPythonTool

from pybox_serverless import AsyncServerlessPyBoxManager

from .tool import PNG_MAGIC, Agent, images, make_manager, stop, texts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture(params=["sync", "async"])
async def agent(
    request: pytest.FixtureRequest, base_url: str, caller: str, workdir: Path
) -> AsyncIterator[Agent]:
    session_id = f"session-{uuid.uuid4().hex[:8]}"
    manager = make_manager(request.param, base_url, caller, timeout=15)
    tool = IPythonTool(pybox_manager=manager, cwd=workdir, session_id=session_id)
    yield Agent(tool, request.param)
    await stop(manager, session_id)


async def test_reads_a_table_from_the_local_folder(agent: Agent) -> None:
    content, _ = await agent.call(
        "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df['units'].sum())"
    )
    assert texts(content).strip() == "445"


async def test_keeps_variables_across_calls_of_one_session(agent: Agent) -> None:
    await agent.call("import pandas as pd\ndf = pd.read_csv('sales.csv')\ntotal = int(df.units.sum())")
    content, _ = await agent.call("total * 2")
    assert texts(content).strip() == "890"


async def test_a_saved_chart_and_csv_appear_locally_and_as_artifacts(agent: Agent, workdir: Path) -> None:
    code = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
df = pd.read_csv('sales.csv')
df.plot.bar(x='region', y='units')
plt.savefig('units.png')
df[df.units > 90].to_csv('big.csv', index=False)
print('saved')
"""
    content, artifacts = await agent.call(code)
    assert "saved" in texts(content)
    assert sorted(artifact.filename for artifact in artifacts) == ["big.csv", "units.png"]
    assert (workdir / "units.png").read_bytes().startswith(PNG_MAGIC)
    assert pd.read_csv(workdir / "big.csv")["region"].tolist() == ["north", "east", "west"]
    assert {artifact.mimetype for artifact in artifacts} == {"image/png", "text/csv"}


async def test_a_changed_local_table_is_seen_by_the_next_call(agent: Agent, workdir: Path) -> None:
    await agent.call("print(1)")
    pd.DataFrame({"region": ["north"], "units": [7], "price": [1.0]}).to_csv(
        workdir / "sales.csv", index=False
    )
    content, _ = await agent.call("import pandas as pd\nprint(len(pd.read_csv('sales.csv')))")
    assert texts(content).strip() == "1"


async def test_an_exception_reaches_the_model_as_text(agent: Agent) -> None:
    content, artifacts = await agent.call("import pandas as pd\npd.read_csv('sales.csv')['nope']")
    assert "KeyError" in texts(content)
    assert "nope" in texts(content)
    assert artifacts == []


async def test_an_inline_figure_reaches_the_model_as_an_image(agent: Agent) -> None:
    code = "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
    content, _ = await agent.call(code)
    shown = images(content)
    assert len(shown) == 1
    assert shown[0].startswith(PNG_MAGIC)


async def test_a_timeout_becomes_tablegpts_message_and_the_kernel_stays_usable(
    base_url: str, caller: str, workdir: Path
) -> None:
    for mode in ("sync", "async"):
        session_id = f"slow-{mode}-{uuid.uuid4().hex[:8]}"
        manager = make_manager(mode, base_url, caller, timeout=2)
        agent = Agent(IPythonTool(pybox_manager=manager, cwd=workdir, session_id=session_id), mode)
        try:
            await agent.call("kept = 41")
            content, _ = await agent.call("import time\ntime.sleep(30)")
            assert content == "Execution timed out. Please try again."
            after, _ = await agent.call("kept + 1")
            assert texts(after).strip() == "42"
        finally:
            await stop(manager, session_id)


async def test_a_long_run_goes_through_the_queue_without_failing(
    base_url: str, caller: str, workdir: Path
) -> None:
    session_id = f"long-{uuid.uuid4().hex[:8]}"
    manager = AsyncServerlessPyBoxManager(base_url, token=caller, timeout=60)
    agent = Agent(IPythonTool(pybox_manager=manager, cwd=workdir, session_id=session_id), "async")
    try:
        code = (
            "import time, pandas as pd\ntime.sleep(22)\n"
            "pd.read_csv('sales.csv').to_csv('copy.csv')\nprint('done')"
        )
        content, artifacts = await agent.call(code)
        assert texts(content).strip() == "done"
        assert [artifact.filename for artifact in artifacts] == ["copy.csv"]
        assert (workdir / "copy.csv").exists()
    finally:
        await stop(manager, session_id)


async def test_another_callers_same_session_id_is_another_kernel(base_url: str, workdir: Path) -> None:
    session_id = f"shared-{uuid.uuid4().hex[:8]}"
    alice = make_manager("async", base_url, f"alice-{uuid.uuid4().hex[:6]}", timeout=15)
    bob = make_manager("sync", base_url, f"bob-{uuid.uuid4().hex[:6]}", timeout=15)
    try:
        alice_agent = Agent(IPythonTool(pybox_manager=alice, cwd=workdir, session_id=session_id), "async")
        bob_agent = Agent(IPythonTool(pybox_manager=bob, cwd=workdir, session_id=session_id), "sync")
        await alice_agent.call("secret = 'alice only'")
        content, _ = await bob_agent.call("secret")
        assert "NameError" in texts(content)
        mine, _ = await alice_agent.call("secret")
        assert "alice only" in texts(mine)
    finally:
        await stop(alice, session_id)
        await stop(bob, session_id)
