import * as z from "zod";
import type { Artifact, RunResult } from "../core/run-result.ts";
import type { JupyterMessage } from "./messages.ts";
import { responseBytes } from "./output-limits.ts";

/*
 * The files a run made. The kernel keeps, privately, the regular files under its root as last
 * seen (path → size, mtime); an IPython `post_run_cell` hook compares after every run of the
 * caller's code and puts what was created or changed into the `execute_reply`'s `payload`, so it
 * travels in the run's own reply on every transport, with no request of its own.
 *
 * Why a hook and a payload rather than a user expression: ipykernel evaluates user expressions
 * only when the cell succeeded (`do_execute`: "If there was an error, don't even try to compute
 * expressions"), but the files a failing or interrupted cell wrote before it stopped are its
 * artifacts too. `post_run_cell` fires after every non-silent cell, ok, raised or interrupted,
 * and the payload is read "regardless of outcome". Silent requests (our helpers) fire no hook.
 *
 * Why inotify: a scan `lstat`s every file; on the Firecracker VMs this project is built on, that
 * is ~3 µs a file, 3-4 ms for 1,000 files, twice the budget of a run's overhead. So the kernel watches its
 * folders (inotify, through ctypes) and after a run reads the events (one `read` when nothing
 * happened) and `lstat`s only the paths they name: the cost follows what the run touched, not how
 * many files lie around. Where inotify cannot be had (another OS, no instances or watches left)
 * or its queue overflowed, or the root itself moved, a full scan (bounded to 10,000 entries)
 * does the same job, slower.
 *
 * The kernel side, for other helpers of ours: the tracker is `sys.modules["_pybox"].artifacts`
 * (absent in a kernel set up before it existed); it reads the root from `_pybox.root` (else the
 * working directory); a helper that wrote or removed files calls its `sync()`, which brings the
 * snapshot up to date reporting nothing, so an upload is not taken for the next run's artifact.
 */

/** The payload's `source`, which tells our entry from any other in an `execute_reply`. */
export const ARTIFACTS_SOURCE = "pybox.artifacts";

/** Most artifacts a result lists; past it `artifactsTruncated` is set. */
export const ARTIFACT_LIMIT = 100;

/** Most entries a full scan of the root visits, so a huge working directory cannot stall a run. */
const SCAN_LIMIT = 10_000;

/** Response bytes the artifact list may take (paths can be 4 KB each): it must not crowd out the output. */
const ARTIFACT_RESPONSE_BYTES = 64 * 1024;

/**
 * Names never listed nor looked into: `__pycache__`, and hidden ones (a leading `.`): upload
 * temporaries (`.pybox-upload-*`), `.ipynb_checkpoints`, and the caches and settings libraries keep
 * in a home folder, which is often the working directory (`.ipython/…/history.sqlite` changes
 * after most runs, `.cache/…`): noise, not what the caller's code made.
 */
const EXCLUDED_NAMES = ["__pycache__"] as const;

/*
 * The tracker, run once per kernel (see `artifactsSetupCode`). It lives in its own namespace;
 * only `sys.modules["_pybox"].artifacts` (the Tracker) is left behind, and the hook.
 */
const TRACKER_SOURCE = String.raw`
import heapq, os, struct, sys, time
from IPython import get_ipython

SKIP = frozenset(${JSON.stringify(EXCLUDED_NAMES)})
SCAN_LIMIT, REPORT_LIMIT, SOURCE = ${SCAN_LIMIT}, ${ARTIFACT_LIMIT}, ${JSON.stringify(ARTIFACTS_SOURCE)}
# inotify(7): MODIFY ATTRIB CLOSE_WRITE MOVED_FROM MOVED_TO CREATE DELETE; DELETE_SELF MOVE_SELF UNMOUNT
CHANGES, SELF = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200, 0x400 | 0x800 | 0x2000
WRITTEN = 0x2 | 0x100 | 0x80  # MODIFY CREATE MOVED_TO: made or written, whatever the stat says
OVERFLOW, IGNORED, ISDIR = 0x4000, 0x8000, 0x40000000
WATCH = CHANGES | SELF | 0x1000000 | 0x2000000 | 0x4000000  # ONLYDIR DONT_FOLLOW EXCL_UNLINK


def libc():
    try:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.inotify_init1, lib.inotify_add_watch, lib.inotify_rm_watch
        return lib
    except Exception:
        return None


class Tracker:
    """The regular files under the kernel's root as last seen, and what changed since."""

    def __init__(self, box, shell):
        self.box, self.shell, self.lib = box, shell, libc()
        self.root, self.files, self.complete, self.taken = None, {}, True, 0
        self.fd, self.wds, self.stale = -1, {}, True

    def sync(self):
        """Catches up with changes that are no run's (our file helpers'), reporting none."""
        self.changes()

    def hook(self, result=None):
        """post_run_cell: what the run changed, into the reply's payload. Never raises."""
        try:
            payload = self.report()
        except BaseException:
            self.stale = True
            return
        try:
            self.shell.payload_manager.write_payload(payload)
        except BaseException:
            pass

    def report(self):
        changed = [c for c in self.changes() if utf8(c[1])]
        newest = heapq.nsmallest(REPORT_LIMIT + 1, changed, key=lambda c: (-c[0], c[1]))
        files = [{"path": p, "size": s, "mtime": m // 1000000} for m, p, s in newest[:REPORT_LIMIT]]
        return {"source": SOURCE, "files": files, "truncated": len(newest) > REPORT_LIMIT}

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.wds = -1, {}

    def changes(self):
        root = os.path.abspath(getattr(self.box, "root", None) or os.getcwd())
        if root != self.root:
            self.resync(root)
            return []
        if self.stale or self.fd < 0:
            return self.resync(root)
        self.stale = True  # until this pass is through: cut short, the next one rescans
        touched = self.events()
        if touched is None:
            return self.resync(root)
        changed = []
        for path, mask in touched.items():
            if mask & ISDIR:
                # A folder came or went (or both): forget what was under it, walk what is there now.
                self.files.pop(path, None)
                self.forget(path + "/")
                full = os.path.join(root, path)
                if os.path.isdir(full) and not os.path.islink(full):
                    self.scan(path + "/", changed, self.files)
            else:
                self.look(path, mask & WRITTEN, changed)
        self.stale = False
        return changed

    def events(self):
        """Relative path -> the events seen for it since the last read; None when a rescan is due."""
        touched = {}
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return touched
            offset = 0
            while offset < len(data):
                wd, mask, _, size = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + size].rstrip(b"\0")
                offset += 16 + size
                if mask & OVERFLOW or (mask & SELF and self.wds.get(wd) == ""):
                    return None
                if mask & IGNORED:
                    self.wds.pop(wd, None)
                    continue
                folder = self.wds.get(wd)
                if folder is None or not mask & CHANGES:
                    continue
                name = os.fsdecode(name)
                if not skipped(name):
                    touched[folder + name] = touched.get(folder + name, 0) | mask

    def look(self, path, written, changed):
        try:
            st = os.lstat(os.path.join(self.root, path))
        except OSError:
            st = None
        if st is None or (st.st_mode & 0o170000) != 0o100000:
            self.files.pop(path, None)
            return
        seen = (st.st_size, st.st_mtime_ns)
        if written or self.files.get(path) != seen:
            changed.append((seen[1], path, seen[0]))
        self.files[path] = seen

    def forget(self, prefix):
        for path in [p for p in self.files if p.startswith(prefix)]:
            del self.files[path]
        for wd in [wd for wd, folder in self.wds.items() if folder.startswith(prefix)]:
            del self.wds[wd]
            self.lib.inotify_rm_watch(self.fd, wd)

    def watch(self, prefix):
        if self.fd < 0:
            return
        wd = self.lib.inotify_add_watch(self.fd, os.fsencode(os.path.join(self.root, prefix)), WATCH)
        if wd < 0:
            self.close()  # no watches left: full scans from now on
        else:
            self.wds[wd] = prefix

    def scan(self, start, changed, old):
        """Walks from folder start, recording each regular file; those unlike old go to changed."""
        budget = SCAN_LIMIT - len(self.files) - len(self.wds)
        stack = [start]
        while stack:
            prefix = stack.pop()
            self.watch(prefix)  # before the walk, so nothing made meanwhile is missed
            try:
                entries = os.scandir(os.path.join(self.root, prefix))
            except OSError:
                continue
            with entries:
                for entry in entries:
                    budget -= 1
                    if budget < 0:
                        self.complete = False
                        return
                    name = entry.name
                    if skipped(name):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(prefix + name + "/")
                        elif entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            seen = (st.st_size, st.st_mtime_ns)
                            if old.get(prefix + name) != seen:
                                changed.append((seen[1], prefix + name, seen[0]))
                            self.files[prefix + name] = seen
                    except OSError:
                        pass

    def resync(self, root):
        """A full scan with fresh watches; what differs from the last snapshot (nothing if the root moved)."""
        same = root == self.root
        old, complete, taken = self.files, self.complete, self.taken
        self.close()
        if self.lib is not None:
            self.fd = self.lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        # Coarse file clocks lag time_ns by a tick: the margin keeps a file made just after it new.
        self.root, self.files, self.complete, self.taken = root, {}, True, time.time_ns() - 10**8
        changed = []
        self.scan("", changed, old if same else {})
        self.stale = False
        if not same:
            return []
        if not complete:
            # Past a truncated scan's end, a file is new only if its mtime says so.
            changed = [c for c in changed if c[1] in old or c[0] >= taken]
        return changed

    def uninstall(self):
        try:
            self.shell.events.unregister("post_run_cell", self.hook)
        except ValueError:
            pass
        self.close()


def skipped(name):
    return name.startswith(".") or name in SKIP


def utf8(path):
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def install():
    box = sys.modules.setdefault("_pybox", type(sys)("_pybox"))
    if getattr(box, "artifacts", None) is not None:
        box.artifacts.uninstall()
    tracker = Tracker(box, get_ipython())
    tracker.sync()
    tracker.shell.events.register("post_run_cell", tracker.hook)
    box.artifacts = tracker


install()
`;

/**
 * Python statements that install the tracker in a kernel and take its baseline: run them silently
 * once per kernel, at start and after a restart, once the kernel's root (`_pybox.root`) is
 * recorded, so the first run reports only what it made. Installing again replaces the tracker.
 */
export function artifactsSetupCode(): string {
  // A JSON string is a valid Python string literal (JSON.stringify writes no `\/`).
  return `exec(compile(${JSON.stringify(TRACKER_SOURCE)}, "<pybox artifacts>", "exec"), {"__name__": "_pybox_artifacts"})`;
}

const PayloadSchema = z.object({
  source: z.literal(ARTIFACTS_SOURCE),
  files: z
    .array(
      z.object({
        path: z.string().min(1),
        size: z.number().int().min(0),
        // Epoch milliseconds, within what a Date can hold.
        mtime: z.number().int().min(-8.64e15).max(8.64e15),
      }),
    )
    .max(ARTIFACT_LIMIT),
  truncated: z.boolean(),
});

/** A RunResult's artifact fields. */
export type ArtifactFields = Pick<RunResult, "artifacts" | "artifactsTruncated">;

/**
 * The artifacts an `execute_reply` carries, newest first. Nothing, or something malformed, is no
 * artifacts: the files are a bonus, never a reason for a run to fail. The list is also kept within
 * a response budget of its own, so long paths cannot crowd the run's output out of a response.
 */
export function artifactsOf(reply: JupyterMessage | undefined): ArtifactFields {
  const payload = reply?.content.payload;
  const entry = Array.isArray(payload)
    ? payload.find(
        (item: unknown) =>
          item !== null &&
          typeof item === "object" &&
          (item as { source?: unknown }).source === ARTIFACTS_SOURCE,
      )
    : undefined;
  const parsed = PayloadSchema.safeParse(entry);
  if (!parsed.success) return { artifacts: [] };
  const artifacts: Artifact[] = [];
  let bytes = 0;
  let truncated = parsed.data.truncated;
  for (const file of parsed.data.files) {
    const artifact = { path: file.path, size: file.size, mtime: new Date(file.mtime).toISOString() };
    bytes += responseBytes(artifact) + 1;
    if (bytes > ARTIFACT_RESPONSE_BYTES) {
      truncated = true;
      break;
    }
    artifacts.push(artifact);
  }
  return truncated ? { artifacts, artifactsTruncated: true } : { artifacts };
}
