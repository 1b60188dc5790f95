"""Child processes that do not outlive their parent (standard library only, Linux first).

A stage of the main job, or an evaluation worker, started with ``preexec_fn=die_with_parent``
gets SIGKILL from the kernel when the process that started it dies (``prctl(PR_SET_PDEATHSIG)``),
``kill -9`` included: nothing goes on rewriting files after the job that owned it is gone. On
systems without prctl it is a no-op (the job's own signal handling still stops its stages).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if hasattr(os, "fork") else None


def die_with_parent(parent_pid: int = 0) -> None:
    """In the child, before exec: ask for SIGKILL when the parent dies. ``parent_pid`` (the
    parent's pid, taken before forking) closes the race where the parent died already."""
    if _LIBC is None or not hasattr(_LIBC, "prctl"):
        return
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)


def child_setup():
    """A ``preexec_fn`` for subprocess: dies with the current process."""
    me = os.getpid()
    return lambda: die_with_parent(me)


def term_as_interrupt(signum, frame):
    """A SIGTERM handler: take Ctrl-C's path (``KeyboardInterrupt``), so the clean-up that
    runs on Ctrl-C - work folders removed, stages stopped and recorded - runs on SIGTERM too."""
    raise KeyboardInterrupt(f"signal {signum}")
