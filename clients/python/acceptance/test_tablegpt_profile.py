"""The code tablegpt-agent generates relies on its `tablegpt` kernel profile (`read_df`, pandas
display options, seaborn with a CJK font). Served with that profile (`PYBOX_KERNEL_PROFILE=tablegpt`
under `npm start`, the example kernelspec on a gateway), it runs through the agent's own tool."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from tablegpt.tools import IPythonTool

from pybox_serverless import AsyncServerlessPyBoxManager

from .tool import PNG_MAGIC, Agent, images, texts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@pytest.fixture
async def agent(base_url: str, caller: str, workdir: Path) -> AsyncIterator[Agent]:
    session_id = f"profile-{uuid.uuid4().hex[:8]}"
    async with AsyncServerlessPyBoxManager(base_url, token=caller, timeout=20) as manager:
        yield Agent(IPythonTool(pybox_manager=manager, cwd=workdir, session_id=session_id), "async")
        await manager.shutdown(session_id)


async def test_read_df_reads_the_csv_tablegpt_attached(agent: Agent) -> None:
    # What tablegpt's file-reading step generates, verbatim.
    content, _ = await agent.call(
        "# Load the data into a DataFrame\ndf = read_df('sales.csv')\nprint(df.shape)"
    )
    assert texts(content).strip() == "(4, 3)"


async def test_read_df_reads_an_excel_workbook(agent: Agent, workdir: Path) -> None:
    pd.DataFrame({"product": ["tea", "coffee"], "stock": [12, 30]}).to_excel(
        workdir / "data.xlsx", index=False
    )
    content, _ = await agent.call("df = read_df('data.xlsx')\nprint(df['stock'].sum())")
    assert texts(content).strip() == "42"


async def test_read_df_detects_a_gbk_encoded_csv(agent: Agent, workdir: Path) -> None:
    pd.DataFrame({"城市": ["北京", "上海", "广州"], "销量": [10, 20, 30]}).to_csv(
        workdir / "gbk.csv", index=False, encoding="gbk"
    )
    # tablegpt's read_df detects the encoding only for `file:` URIs (its `path_from_uri`); a bare
    # name of a non-UTF-8 file fails upstream with "URI does not start with 'file:'".
    code = (
        "from pathlib import Path\n"
        "df = read_df(Path('gbk.csv').absolute().as_uri())\n"
        "print(list(df.columns), df['城市'].tolist())"
    )
    content, _ = await agent.call(code)
    assert texts(content).strip() == "['城市', '销量'] ['北京', '上海', '广州']"


async def test_a_seaborn_chart_with_chinese_labels_renders_with_its_glyphs(agent: Agent) -> None:
    code = """
import warnings
import matplotlib.pyplot as plt
import seaborn as sns
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    ax = sns.barplot(x=["北京", "上海", "广州"], y=[10, 20, 30])
    ax.set_title("各城市销量")
    plt.gcf().canvas.draw()
    plt.show()
print("glyph warnings:", sum("Glyph" in str(w.message) for w in caught))
"""
    content, _ = await agent.call(code)
    assert "glyph warnings: 0" in texts(content)
    shown = images(content)
    assert len(shown) == 1
    assert shown[0].startswith(PNG_MAGIC)
