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

import os
import re
import shutil
import tempfile

OWNED = re.compile(r"^(?:\.coreml-|\.old-|\.app-|convert-sm-)(\d+)-|^\..+\.(\d+)\.[^.]+\.partial$"
                   r"|^(?:inputs|items|raw)-[0-9a-f]+\.(?:npy|json|meta\.json)\.tmp-(\d+)"
                   r"(?:\.npy(?:\.short\.npy)?)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        if pid == os.getpid() or _alive(pid):
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
