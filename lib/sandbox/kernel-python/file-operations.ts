/**
 * Python of the kernel side of files, part two: the operations `../file-helpers.ts` calls, each
 * taking its arguments as a dict and answering a JSON-able value (`{"ok": False, ...}` for a
 * refusal, never an exception for the caller's mistakes). The file itself is always opened with
 * O_NOFOLLOW; an upload is written to a hidden `.pybox-upload-<hash>` beside its target, chunk by
 * chunk in order (the kernel keeps each upload's total and SHA-256 so far in `_pybox.files`), and
 * renamed over the target with the last chunk. Plain ASCII, no backticks.
 */
// biome-ignore lint/complexity/noUselessStringRaw: Python source; raw keeps a backslash added later Python's.
export const FILE_OPERATIONS_PY = String.raw`
def write(a, payload):
    rel, start, total = a["path"], a["start"], a["total"]
    parts = segments(rel)
    name, shown = parts[-1], quoted(parts)
    if name.startswith(TEMP):
        raise Refusal("invalid", "names starting with %s are reserved" % TEMP)
    data = base64.b64decode(payload, validate=True)
    if start + len(data) > total:
        raise Refusal("invalid", "the chunk ends past the file's %d bytes" % total)
    top = root()
    dfd, here = open_dir(top, parts[:-1], True, "invalid")
    try:
        target(name, dfd, shown)
        temp = TEMP + hashlib.sha256(rel.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        key = here + "/" + temp
        _, s = private()
        uploads = s["uploads"]
        if start == 0:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
            upload = uploads[key] = {"total": total, "received": 0, "sha": hashlib.sha256(), "at": time.time()}
        else:
            upload = uploads.get(key)
            if upload is None:
                raise Refusal("conflict", "no upload of %s is under way: send its first chunk (from byte 0)" % shown, received=0)
            if upload["total"] != total:
                raise Refusal("conflict", "the upload of %s is of %d bytes, not %d" % (shown, upload["total"], total), received=upload["received"])
            if start != upload["received"]:
                raise Refusal("conflict", "the next chunk of %s starts at byte %d, not %d" % (shown, upload["received"], start), received=upload["received"])
            try:
                fd = os.open(temp, os.O_WRONLY | NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                uploads.pop(key, None)
                raise Refusal("conflict", "the upload of %s was abandoned: send its first chunk (from byte 0)" % shown, received=0)
        try:
            held = os.fstat(fd).st_size
            if held < start:
                uploads.pop(key, None)
                raise Refusal("conflict", "the upload of %s was cut short: send its first chunk (from byte 0)" % shown, received=0)
            if held > start:
                os.ftruncate(fd, start)
            write_at(fd, data, start)
        finally:
            os.close(fd)
        sha = upload["sha"].copy()
        sha.update(data)
        # One step, so an interrupt cannot leave the hash and the count disagreeing.
        upload.update({"sha": sha, "received": start + len(data), "at": time.time()})
        if upload["received"] < total:
            return {"ok": True, "done": False, "received": upload["received"]}
        existed = target(name, dfd, shown)
        os.replace(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        uploads.pop(key, None)
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        sha = remember((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), upload["sha"].hexdigest())
        return {"ok": True, "done": True, "created": not existed, "file": info(rel, st, sha)}
    finally:
        os.close(dfd)


def read(a):
    rel, start, end, most, limit = a["path"], a.get("start"), a.get("end"), a["most"], a["limit"]
    parts = segments(rel)
    name, shown = parts[-1], quoted(parts)
    if name.startswith(TEMP):
        raise Refusal("not_found", "no file %s" % shown)
    dfd, _ = open_dir(root(), parts[:-1], False, "not_found")
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except FileNotFoundError:
            raise Refusal("not_found", "no file %s" % shown)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Refusal("invalid", "%s is a symbolic link" % shown)
            raise
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise Refusal("invalid", "%s is a folder: list it instead" % shown)
        if not stat.S_ISREG(st.st_mode):
            raise Refusal("invalid", "%s is not a regular file" % shown)
        size = st.st_size
        if size > limit:
            raise Refusal("too_large", "%s has %d bytes, more than the largest file this server moves (%d)" % (shown, size, limit), size=size)
        if start is None or (start == 0 and size == 0):
            if size > most:
                raise Refusal("too_large", "%s has %d bytes, more than one response carries (%d): read it in parts with Range" % (shown, size, most), size=size)
            first, last = 0, size - 1
        else:
            if start >= size:
                raise Refusal("range", "the range starts at byte %d, past the end of %s (%d bytes)" % (start, shown, size), size=size)
            first = start
            last = min(size - 1, start + most - 1, size - 1 if end is None else end)
        want, got, blocks = last - first + 1, 0, []
        while got < want:
            block = os.pread(fd, want - got, first + got)
            if not block:
                break
            blocks.append(block)
            got += len(block)
        data = b"".join(blocks)
        return {
            "ok": True,
            "file": info(rel, st, digest(fd, st)),
            "data": base64.b64encode(data).decode("ascii"),
            "range": None if start is None or (start == 0 and size == 0) else [first, first + len(data) - 1],
        }
    finally:
        os.close(fd)


def delete(a):
    rel = a["path"]
    parts = segments(rel)
    name, shown = parts[-1], quoted(parts)
    if name.startswith(TEMP):
        raise Refusal("not_found", "no file %s" % shown)
    dfd, here = open_dir(root(), parts[:-1], False, "not_found")
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise Refusal("not_found", "no file %s" % shown)
        if stat.S_ISLNK(st.st_mode):
            raise Refusal("invalid", "%s is a symbolic link" % shown)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dfd)
            return {"ok": True}
        child = os.open(name, DIR | NOFOLLOW, dir_fd=dfd)
        try:
            left = [n for n in os.listdir(child) if not n.startswith(TEMP)]
            if left:
                raise Refusal("not_empty", "%s is a folder with content: delete what is in it first" % shown)
            for n in os.listdir(child):
                os.unlink(n, dir_fd=child)
        finally:
            os.close(child)
        _, s = private()
        gone = os.path.join(here, name) + "/"
        for key in [k for k in s["uploads"] if k.startswith(gone)]:
            s["uploads"].pop(key, None)
        os.rmdir(name, dir_fd=dfd)
        return {"ok": True}
    finally:
        os.close(dfd)


def entries(fd):
    with os.scandir(fd) as found:
        kept = [e for e in found if not (e.name.startswith(TEMP) or e.name in SKIP)]
    kept.sort(key=lambda e: e.name)
    return kept


def listing(a):
    rel, recursive, most = a["dir"].rstrip("/"), a["recursive"], a["most"]
    parts = segments(rel) if rel else []
    fd, _ = open_dir(root(), parts, False, "invalid")
    try:
        stack = [(fd, rel + "/" if rel else "", iter(entries(fd)))]
    except BaseException:
        os.close(fd)
        raise
    files = []
    truncated = False
    try:
        while stack:
            fd, prefix, rest = stack[-1]
            entry = next(rest, None)
            if entry is None:
                os.close(fd)
                stack.pop()
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else None
            if kind is None:
                continue
            if len(files) >= most:
                truncated = True
                break
            path = prefix + entry.name
            files.append({"path": path, "size": st.st_size if kind == "file" else 0, "mtime": instant(st), "kind": kind})
            if kind == "dir" and recursive:
                try:
                    child = os.open(entry.name, DIR | NOFOLLOW, dir_fd=fd)
                except OSError:
                    continue
                try:
                    stack.append((child, path + "/", iter(entries(child))))
                except OSError:
                    os.close(child)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    files.sort(key=lambda f: f["path"])
    return {"ok": True, "files": files, "truncated": truncated}


def forget_abandoned(older_than):
    """Removes the temporary files of uploads this kernel took no chunk of for older_than seconds."""
    _, s = private()
    cutoff = time.time() - older_than
    for key, upload in list(s["uploads"].items()):
        if upload["at"] <= cutoff:
            s["uploads"].pop(key, None)
            try:
                os.unlink(key)
            except OSError:
                pass


def sweep(a):
    """Removes temporary uploads under the root older than the age given (0: all of them), bounded."""
    older_than = a["olderThan"]
    forget_abandoned(older_than)
    cutoff = time.time() - older_than
    deadline = time.monotonic() + a["budget"]
    seen = 0
    _, s = private()
    live = set(k for k, u in s["uploads"].items() if u["at"] > cutoff)
    top = root()
    stack = [top]
    while stack and seen < SWEEP_ENTRIES and time.monotonic() < deadline:
        here = stack.pop()
        try:
            with os.scandir(here) as found:
                for entry in found:
                    seen += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.name.startswith(TEMP) and entry.path not in live:
                        try:
                            if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                                os.unlink(entry.path)
                        except OSError:
                            pass
        except OSError:
            pass
    return None


def record_root(a):
    m, _ = private()
    m.root = os.getcwd()
    return None


OPS = {"write": write, "read": read, "delete": delete, "list": listing, "sweep": sweep, "root": record_root}
MISSING = (errno.ENOENT,)
DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)
FULL = (errno.ENOSPC, errno.EDQUOT)


def synced(op, answer):
    """Tells the artifacts tracker (if the kernel has one) of a file written or removed, so an
    upload is not taken for something the next run made."""
    changed = op == "delete" or (op == "write" and answer.get("done"))
    tracker = getattr(sys.modules.get("_pybox"), "artifacts", None)
    if changed and answer.get("ok") and tracker is not None:
        try:
            tracker.sync()
        except Exception:
            pass
    return answer


def call(request, payload=""):
    a = json.loads(base64.b64decode(request))
    op = a["op"]
    try:
        if op != "sweep" and op != "root":
            forget_abandoned(a["abandonAfter"])
        return synced(op, OPS[op](a, payload) if op == "write" else OPS[op](a))
    except Refusal as refusal:
        return refusal.value
    except UnicodeError:
        return Refusal("invalid", "the path cannot be a file name in the kernel").value
    except OSError as error:
        shown = "'%s'" % a.get("path", a.get("dir", ""))
        if error.errno in MISSING:
            return Refusal("not_found", "no file %s" % shown).value
        if error.errno in DENIED:
            return Refusal("invalid", "%s: permission denied in the kernel" % shown).value
        if error.errno in FULL:
            return Refusal("no_space", "no space left in the kernel's file system").value
        if error.errno == errno.ELOOP:
            return Refusal("invalid", "%s is a symbolic link" % shown).value
        if error.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST):
            return Refusal("invalid", "%s cannot be used here (%s)" % (shown, errno.errorcode.get(error.errno, "error"))).value
        raise




module = types.ModuleType("_pybox_files")
module.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
sys.modules["_pybox_files"] = module
`;
