"""The working-directory mirror: a local folder kept in step with the kernel's working directory.

tablegpt-agent gives its tool a local `cwd` holding the user's tables and, after a run, looks in
that same folder for the charts and CSVs the code saved. A remote kernel does not share the
agent's disk, so before each run the box uploads what is new or changed locally, and after it
downloads what the run made. This module decides *what* moves; the managers move the bytes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

logger = logging.getLogger("pybox_serverless.mirror")

#: Default bound on the bytes one run may move each way (uploads before, downloads after).
DEFAULT_MIRROR_MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    """A file of the local folder: where it is, its kernel-side name, and the stat it was seen with."""

    path: Path
    relative: str
    size: int
    mtime_ns: int


@dataclass
class WorkdirMirror:
    """What was last sent to (or fetched from) one kernel, by relative path: `(size, mtime_ns)`.

    Hidden files and folders (names starting with `.`), `__pycache__` and symbolic links are never
    mirrored: links could point anywhere on the agent's machine.
    """

    root: Path
    max_bytes: int = DEFAULT_MIRROR_MAX_BYTES
    synced: dict[str, tuple[int, int]] = field(default_factory=dict)

    def scan(self) -> list[LocalFile]:
        """Every mirrorable file under the root, in path order."""
        found: list[LocalFile] = []
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if _visible(d) and not Path(folder, d).is_symlink())
            for name in sorted(files):
                path = Path(folder, name)
                if not _visible(name) or path.is_symlink():
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue  # removed while we looked
                relative = path.relative_to(self.root).as_posix()
                found.append(LocalFile(path, relative, stat.st_size, stat.st_mtime_ns))
        return found

    def pending_uploads(self) -> list[LocalFile]:
        """Files new or changed (by size and mtime) since they were last synced, within the byte
        bound; what does not fit is left for a later run, with a warning naming it."""
        pending: list[LocalFile] = []
        budget = self.max_bytes
        for file in self.scan():
            if self.synced.get(file.relative) == (file.size, file.mtime_ns):
                continue
            if file.size > budget:
                logger.warning(
                    "not uploading %s (%d bytes): over the mirror's %d-byte bound for this run",
                    file.relative,
                    file.size,
                    self.max_bytes,
                )
                continue
            budget -= file.size
            pending.append(file)
        return pending

    def mark_synced(self, relative: str) -> None:
        """Records a file's current local stat as the kernel's copy (after an upload or download)."""
        stat = (self.root / relative).stat()
        self.synced[relative] = (stat.st_size, stat.st_mtime_ns)

    def local_target(self, relative: str) -> Path | None:
        """Where a kernel-side file lands locally, or None for a name that must not be written
        (absolute, `..`, hidden, or through a local symbolic link)."""
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or any(p in ("", ".", "..") for p in parts):
            return None
        if not all(_visible(p) for p in parts):
            return None
        target = self.root.joinpath(*parts)
        for parent in [target, *target.parents]:
            if parent == self.root:
                break
            if parent.is_symlink():
                return None
        return target

    def downloads_within_bound(self, sizes: list[tuple[str, int]]) -> list[str]:
        """The artifacts (newest first, as the service lists them) that fit in the byte bound."""
        chosen: list[str] = []
        budget = self.max_bytes
        for relative, size in sizes:
            if size > budget:
                logger.warning("not downloading %s (%d bytes): over the mirror's byte bound", relative, size)
                continue
            budget -= size
            chosen.append(relative)
        return chosen


def write_atomically(target: Path, data: bytes) -> None:
    """Writes a downloaded file so a reader never sees half of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.pybox-download")
    temporary.write_bytes(data)
    os.replace(temporary, target)


def local_folder(cwd: str | os.PathLike[str] | None) -> Path | None:
    """The cwd as a local folder to mirror, or None when it is not one on this machine (then it is
    passed to the service as the kernel's own working directory)."""
    if cwd is None:
        return None
    path = Path(cwd)
    return path.resolve() if path.is_dir() else None


def _visible(name: str) -> bool:
    return not name.startswith(".") and name != "__pycache__"
