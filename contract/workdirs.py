"""Work folders and files that name their owner, and the sweep that removes a dead owner's.

Every temporary thing convert/ writes (a package being checked, a file being written, the lean
SavedModel) is named with the pid of the process that made it: ``.coreml-<pid>-...``,
``.<file>.<pid>.<random>.partial``, ``convert-sm-<pid>-...``, edge_eval's cached inputs
being written (``inputs-<key>.npy.tmp-<pid>.npy``, ``items-``, ``raw-``) and the app's assets being assembled
(``.app-<pid>-...``). Each is removed on every exit path
its process takes; what ``kill -9`` leaves behind is removed by the next run's ``sweep`` (it skips
what a live process owns, so two conversions side by side leave each other alone).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile

OWNED = re.compile(r"^(?:\.coreml-|\.old-|\.app-|convert-sm-|\.work-shards-)(\d+)-|^\..+\.(\d+)\.[^.]+\.partial$"
                   r"|^(?:inputs|items|raw)-[0-9a-f]+\.(?:npy|json|meta\.json)\.tmp-(\d+)"
                   r"(?:\.npy(?:\.short\.npy)?)?$")


def user_cache(*parts: str) -> str:
    """``$XDG_CACHE_HOME/inception-edge/...`` (default ``~/.cache``): this user's own cache of
    things built once (MediaPipe's environment, the Android core's classes, the peers'
    environment) - never a shared folder like /tmp, where another user could plant them."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "inception-edge", *parts)


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:  # no /proc (macOS): kill(0) is the answer
        return True


@contextlib.contextmanager
def locked(path: str, blocking: bool = True):
    """An exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block; with
    ``blocking=False`` BlockingIOError when another process holds it. The lock dies with its
    process, so a killed holder never leaves it stuck."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)




def mkdtemp(prefix: str, dir: str = None) -> str:  # noqa: A002 - tempfile's name
    """``tempfile.mkdtemp`` with this process's pid in the name (``prefix`` ends in ``-``)."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=dir)


def sweep(folder: str, log=None) -> list:
    """Removes the work folders and partial files in ``folder`` whose owner is dead."""
    gone = []
    try:
        names = os.listdir(folder)
    except OSError:
        return gone
    for name in names:
        m = OWNED.match(name)
        if not m:
            continue
        pid = int(next(g for g in m.groups() if g))
        if pid == os.getpid() or alive(pid):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                continue
        gone.append(name)
    if gone and log:
        log(f"[convert] removed {len(gone)} work file(s) left by stopped runs in {folder}: "
            + ", ".join(sorted(gone)[:5]), flush=True)
    return gone
