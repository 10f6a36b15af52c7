/** The name an upload has until its last chunk is in: hidden, so listings and artifacts skip it. */
export const UPLOAD_TEMP_PREFIX = ".pybox-upload-";

/**
 * Python of the kernel side of files, part one: how a caller's relative path becomes a descriptor
 * of a folder inside the kernel's root, and what a file is (size, time, SHA-256). Installed with
 * part two (`file-operations.ts`) by `../file-helpers.ts`; plain ASCII, no backticks.
 *
 * The root is the real path of the folder recorded at start (`sys.modules["_pybox"].root`), or the
 * working directory when none was. `open_dir` walks from it one folder at a time with descriptors:
 * a real folder is opened with O_NOFOLLOW, a folder that is a symbolic link only when its real path
 * is inside the root, and a folder made for an upload is made in the folder just checked. Anything
 * refused is a `Refusal`, whose value the TS side turns into the project's errors.
 */
export const FILE_PATHS_PY = String.raw`
import base64, errno, hashlib, json, os, stat, sys, time, types
from datetime import datetime, timezone

TEMP = ${JSON.stringify(UPLOAD_TEMP_PREFIX)}
SKIP = ("__pycache__", ".ipynb_checkpoints")
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NOFOLLOW = os.O_NOFOLLOW
HASHES_KEPT = 64
SWEEP_ENTRIES = 50000


class Refusal(Exception):
    def __init__(self, reason, message, **extra):
        super().__init__(message)
        self.value = dict(ok=False, reason=reason, message=message, **extra)


def private():
    m = sys.modules.get("_pybox")
    if m is None:
        m = types.ModuleType("_pybox")
        sys.modules["_pybox"] = m
    s = getattr(m, "files", None)
    if not isinstance(s, dict):
        s = {"uploads": {}, "hashes": {}}
        m.files = s
    return m, s


def root():
    r = getattr(sys.modules.get("_pybox"), "root", None)
    return os.path.realpath(r if isinstance(r, str) else os.getcwd())


def inside(top, path):
    return path == top or path.startswith(top if top.endswith("/") else top + "/")


def segments(rel):
    parts = rel.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise Refusal("invalid", "invalid path '%s'" % rel)
    return parts


def quoted(parts):
    return "'%s'" % "/".join(parts)


def open_dir(top, parts, make, notdir):
    """A descriptor of the folder top/parts; every step stays in top, missing ones made when make is set."""
    fd = os.open(top, DIR)
    here = top
    try:
        for i, part in enumerate(parts):
            shown = quoted(parts[: i + 1])
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not make:
                    raise Refusal("not_found", "no folder %s" % shown)
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(os.path.join(here, part))
                if not inside(top, real):
                    raise Refusal("invalid", "%s is a symbolic link out of the working directory" % shown)
                try:
                    child = os.open(real, DIR)
                except (FileNotFoundError, NotADirectoryError):
                    raise Refusal(notdir, "%s is not a folder" % shown)
                here = real
            elif stat.S_ISDIR(st.st_mode):
                child = os.open(part, DIR | NOFOLLOW, dir_fd=fd)
                here = os.path.join(here, part)
            else:
                raise Refusal(notdir, "%s is not a folder" % shown)
            os.close(fd)
            fd = child
        return fd, here
    except BaseException:
        os.close(fd)
        raise


def instant(st):
    try:
        moment = datetime.fromtimestamp(st.st_mtime_ns // 1000000 / 1000, timezone.utc)
    except (ValueError, OverflowError, OSError):
        moment = datetime.max.replace(tzinfo=timezone.utc) if st.st_mtime_ns > 0 else datetime.fromtimestamp(0, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def digest(fd, st):
    _, s = private()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = s["hashes"].get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    offset = 0
    while True:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            break
        h.update(block)
        offset += len(block)
    return remember(key, h.hexdigest())


def remember(key, sha):
    _, s = private()
    hashes = s["hashes"]
    hashes[key] = sha
    while len(hashes) > HASHES_KEPT:
        hashes.pop(next(iter(hashes)))
    return sha


def info(rel, st, sha):
    return {"path": rel, "size": st.st_size, "mtime": instant(st), "sha256": sha}


def target(name, dfd, shown):
    """Whether a regular file is at name; anything else there is refused."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise Refusal("invalid", "%s is a symbolic link" % shown)
    if stat.S_ISDIR(st.st_mode):
        raise Refusal("invalid", "%s is a folder" % shown)
    if not stat.S_ISREG(st.st_mode):
        raise Refusal("invalid", "%s is not a regular file" % shown)
    return True


def write_at(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
`;
