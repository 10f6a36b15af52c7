"""The mirror's choices, on a real folder and without a server: what goes up, what comes down."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pybox_serverless.mirror import WorkdirMirror, local_folder, write_atomically

if TYPE_CHECKING:
    from pathlib import Path


def names(mirror: WorkdirMirror) -> list[str]:
    return [file.relative for file in mirror.pending_uploads()]


def sync_all(mirror: WorkdirMirror) -> None:
    for file in mirror.pending_uploads():
        mirror.mark_synced(file.relative)


def test_uploads_every_visible_file_once(tmp_path: Path) -> None:
    (tmp_path / "sales.csv").write_text("a,b\n1,2\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.csv").write_text("x\n")
    mirror = WorkdirMirror(tmp_path)
    assert names(mirror) == ["sales.csv", "sub/more.csv"]
    sync_all(mirror)
    assert names(mirror) == []


def test_a_changed_size_or_mtime_uploads_again(tmp_path: Path) -> None:
    table = tmp_path / "sales.csv"
    table.write_text("a\n1\n")
    mirror = WorkdirMirror(tmp_path)
    sync_all(mirror)
    table.write_text("a\n1\n2\n")
    assert names(mirror) == ["sales.csv"]
    sync_all(mirror)
    stat = table.stat()
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert names(mirror) == ["sales.csv"]


def test_skips_hidden_files_folders_caches_and_links(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "m.pyc").write_bytes(b"\0")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("not yours")
    (tmp_path / "link.txt").symlink_to(outside)
    (tmp_path / "linked-dir").symlink_to(tmp_path.parent)
    (tmp_path / "visible.txt").write_text("ok")
    assert names(WorkdirMirror(tmp_path)) == ["visible.txt"]


def test_the_byte_bound_leaves_what_does_not_fit_for_later(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a" * 60)
    (tmp_path / "b.bin").write_bytes(b"b" * 60)
    (tmp_path / "c.bin").write_bytes(b"c" * 30)
    mirror = WorkdirMirror(tmp_path, max_bytes=100)
    assert names(mirror) == ["a.bin", "c.bin"]
    sync_all(mirror)
    assert names(mirror) == ["b.bin"]


def test_download_bound_keeps_the_newest_that_fit(tmp_path: Path) -> None:
    mirror = WorkdirMirror(tmp_path, max_bytes=100)
    assert mirror.downloads_within_bound([("new.png", 70), ("big.csv", 50), ("old.txt", 20)]) == [
        "new.png",
        "old.txt",
    ]


def test_refuses_to_write_outside_or_hidden(tmp_path: Path) -> None:
    mirror = WorkdirMirror(tmp_path)
    (tmp_path / "out").symlink_to(tmp_path.parent)
    assert mirror.local_target("chart.png") == tmp_path / "chart.png"
    assert mirror.local_target("plots/chart.png") == tmp_path / "plots" / "chart.png"
    for bad in ["../escape.txt", "/etc/passwd", "a/../../b", ".bashrc", "a/.hidden/b", "out/x.txt", ""]:
        assert mirror.local_target(bad) is None, bad


def test_downloaded_files_are_not_uploaded_back(tmp_path: Path) -> None:
    mirror = WorkdirMirror(tmp_path)
    target = mirror.local_target("plots/chart.png")
    assert target is not None
    write_atomically(target, b"\x89PNG")
    mirror.mark_synced("plots/chart.png")
    assert names(mirror) == []
    assert target.read_bytes() == b"\x89PNG"
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["chart.png"]


def test_only_an_existing_local_folder_is_mirrored(tmp_path: Path) -> None:
    assert local_folder(tmp_path) == tmp_path.resolve()
    assert local_folder(tmp_path / "missing") is None
    assert local_folder("/home/jovyan/work-on-the-gateway") is None
    assert local_folder(None) is None
