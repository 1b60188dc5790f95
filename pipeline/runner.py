"""Run stages in order, skipping those whose inputs, config and code have not changed.

A stage is data (``Stage``): a command (``python -m <entry module> ...``), the paths it reads,
the paths it writes and the stage's config. Its code is the import closure of its entry module:
every project file it can import, at module level or inside a function, ``contract/`` included,
with the data files of those packages (``contract/schema/``) - so an edit a stage could see reruns
it, and an edit no stage imports reruns nothing. Its *key* is a hash of all of those; after a stage
succeeds the key and the hashes of its outputs go into the state file. A later run skips the
stage when the key is the same and its outputs still hash as recorded, so a deleted or edited
artifact makes its stage (and only the stages that read it) run again.

A stage that fails is recorded as failed; stages that need its outputs are marked ``blocked``
and do not run, the others go on, and the outputs of finished stages stay as they were.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence

from contract.code import import_closure
from contract.proc import child_setup
from contract.workdirs import locked

STATE_VERSION = 1
# files above this size, or folders of more files than this, are keyed by (path, size, mtime)
# instead of their content: hashing a user's 150 GB ImageNet on every run would cost more than
# the stage it guards
CONTENT_HASH_MAX_BYTES = 512 << 20
CONTENT_HASH_MAX_FILES = 5000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Stage:
    name: str
    argv: List[str]
    inputs: List[str] = dataclasses.field(default_factory=list)
    outputs: List[str] = dataclasses.field(default_factory=list)
    config: dict = dataclasses.field(default_factory=dict)
    after: List[str] = dataclasses.field(default_factory=list)  # stages whose outputs it needs
    description: str = ""
    ok_codes: Sequence[int] = (0,)  # exit codes that count as success
    # exit codes that mean "finished, with some artifacts failing their checks": the outputs
    # are usable (the manifest lists the failures), later stages go on, the stage is recorded
    # as partial and is not skipped next time (it may pass then)
    partial_codes: Sequence[int] = ()
    # runs with no other stage beside it (it uses every core, or it times something)
    exclusive: bool = False

    @property
    def entry(self) -> Optional[str]:
        """The module the command runs (``python -m <entry>``), whose imports are its code."""
        argv = list(self.argv)
        return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------
def _file_digest(path: str, h) -> None:
    st = os.stat(path)
    if st.st_size > CONTENT_HASH_MAX_BYTES:
        h.update(f"stat:{st.st_size}:{st.st_mtime_ns}".encode())
        return
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def fingerprint(path: str, ignore: Sequence[str] = ("__pycache__",)) -> Optional[str]:
    """Content hash of a file or folder (None when it does not exist). Large files and very
    large folders are keyed by size and modification time."""
    if not os.path.exists(path):
        return None
    h = hashlib.sha256()
    if os.path.isfile(path):
        _file_digest(path, h)
        return h.hexdigest()
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in ignore and not d.startswith("."))
        files += [os.path.join(root, n) for n in sorted(names)
                  if not n.startswith(".") and not n.endswith(".pyc")]
    by_stat = len(files) > CONTENT_HASH_MAX_FILES
    for p in files:
        h.update(os.path.relpath(p, path).encode() + b"\0")
        if by_stat:
            st = os.stat(p)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            _file_digest(p, h)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# code: the import closure of a stage's entry module (contract.code)
# --------------------------------------------------------------------------------------------
def code_fingerprint(stage: Stage, root: str = ROOT) -> Dict[str, Optional[str]]:
    if stage.entry is None:
        return {}
    return {f: fingerprint(os.path.join(root, f)) for f in import_closure(stage.entry, root)}


def stage_key(stage: Stage, cwd: str, root: str = ROOT) -> str:
    payload = {
        "argv": stage.argv,
        "config": stage.config,
        "inputs": {p: fingerprint(os.path.join(cwd, p)) for p in stage.inputs},
        "code": code_fingerprint(stage, root),
        "python": sys.version.split()[0],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------
def load_state(path: str) -> dict:
    try:
        with open(path) as f:
            state = json.load(f)
        if state.get("version") == STATE_VERSION:
            return state
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    return {"version": STATE_VERSION, "stages": {}}


def save_state(path: str, state: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def up_to_date(stage: Stage, key: str, rec: Optional[dict], cwd: str) -> Optional[str]:
    """None if the stage can be skipped, else why it must run."""
    if not rec:
        return "never ran"
    if rec.get("status") != "ok":
        return f"last run {rec.get('status')}"
    if rec.get("key") != key:
        return "inputs, config or code changed"
    for p, h in (rec.get("outputs") or {}).items():
        if fingerprint(os.path.join(cwd, p)) != h:
            return f"output {p} changed or is missing"
    return None


# --------------------------------------------------------------------------------------------
# one job at a time
# --------------------------------------------------------------------------------------------
class JobLocked(RuntimeError):
    """Another run of the same job (or a stage it left running) holds the job's lock."""


@contextlib.contextmanager
def job_lock(path: str):
    """Holds ``path`` locked (``flock``) for the job's lifetime; yields the lock's fd, which the
    stages inherit, so the lock is free only once the job and every stage it started are gone.
    JobLocked when it is held."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with locked(path, blocking=False) as fd:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield fd
    except BlockingIOError:
        try:
            with open(path) as f:
                holder = f.read(64).strip() or "?"
        except OSError:
            holder = "?"
        raise JobLocked(f"this job is already running (lock {path} held by pid {holder}, "
                        "or a stage it started is still alive): wait for it, or stop it "
                        "first") from None


def _stop(running: dict, grace: float = 5.0) -> None:
    """SIGTERM to every running stage's process group, then SIGKILL after ``grace`` seconds."""
    import signal

    procs = [r[0] for r in running.values() if r[0] is not None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.time() + grace
        while sig == signal.SIGTERM and time.time() < deadline and any(
                p.poll() is None for p in procs):
            time.sleep(0.1)
    for p in procs:
        p.wait()


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# TensorFlow's and XLA's start-up lines that say nothing to a user of a CPU machine (each
# process that imports TensorFlow prints them, some twice): absl's pre-init notice, INFO lines
# (oneDNN is on, no CUDA driver, CPU features) and the CUDA-init error without a GPU. Warnings
# and every other error line still reach the user.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ \S+\] "
    r"|E\d{4} [\d:.]+ +\d+ cuda_(platform|driver|executor)\.cc:\d+\] failed call to cuInit"
    r"|E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_HALF only on platforms with"
    r"|W\d{4} [\d:.]+ +\d+ \S+\] (TF-TRT Warning: Could not find TensorRT|Could not find cuda))")


def is_noise(line: str) -> bool:
    return bool(NOISE.match(line))


def _start(s: Stage, cwd: str, env, stream, prefix: bool, pass_fds=()):
    """Starts a stage's command; its output is piped and written line by line without
    TensorFlow's start-up noise (``NOISE``), with ``prefix`` with the stage's name in front
    (stages running side by side stay readable)."""
    # its own process group (so the job can stop it and everything it started), killed by the
    # kernel if the job dies (kill -9 included), holding the job's lock while it lives
    proc = subprocess.Popen(s.argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
                            process_group=0, preexec_fn=child_setup(), pass_fds=pass_fds)
    out = stream if stream is not None else sys.stdout
    head = f"[{s.name}] " if prefix else ""

    def pump():
        for line in proc.stdout:
            if not is_noise(line):
                out.write(head + line)
                out.flush()
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return proc, t


def run_stages(stages: Sequence[Stage], state_path: str, cwd: str = ".", force: Sequence[str] = (),
               env: Optional[dict] = None, log: Callable[..., None] = print,
               stream=None, parallel: int = 1, pass_fds: Sequence[int] = ()) -> List[dict]:
    """Run (or skip) every stage; returns one summary row per stage (in stage order), and keeps
    the state file current after each stage so a killed job loses nothing that finished.

    Stages start in order. With ``parallel`` > 1 a stage may start while earlier ones still run,
    once the stages it runs ``after`` have finished, unless it or a running stage is
    ``exclusive`` (it needs every core, or times something)."""
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate stage names: {names}")
    if parallel < 1:
        raise ValueError(f"parallel must be >= 1. Received: {parallel}")
    for s in stages:
        unknown = [a for a in s.after if a not in names[:names.index(s.name)]]
        if unknown:
            raise ValueError(f"stage {s.name} runs after {unknown}, which are not earlier stages")
    by_name = {s.name: s for s in stages}
    state = load_state(state_path)
    rows: Dict[str, dict] = {}
    status: Dict[str, str] = {}
    running: Dict[str, tuple] = {}  # name -> (proc, pump thread, t0, key, why, head)
    total = len(stages)
    t_job = time.perf_counter()
    started_job = _now()
    pending = list(enumerate(stages, 1))
    started: Dict[str, str] = {}

    def finish(name: str, rc: int, err: Optional[str]) -> None:
        proc, pump, t0, key, why, head = running.pop(name)
        if pump is not None:
            pump.join()
        s = by_name[name]
        wall = time.perf_counter() - t0
        missing = [p for p in s.outputs if not os.path.exists(os.path.join(cwd, p))]
        if rc in s.ok_codes and not missing:
            st = "ok"
        elif rc in s.partial_codes:  # some outputs failed their checks (and are not there)
            st = "partial"
        else:
            st = "failed"
            err = err or (f"exit code {rc}" if rc not in s.ok_codes else
                          f"finished without writing {', '.join(missing)}")
        status[name] = st
        state["stages"][name] = {
            "status": st, "key": key, "wall_s": round(wall, 1), "started": started[name],
            "finished": _now(),
            "exit_code": rc, "error": err,
            "outputs": {p: fingerprint(os.path.join(cwd, p)) for p in s.outputs}}
        save_state(state_path, state)
        rows[name] = {"stage": name, "status": st, "wall_s": round(wall, 1), "reason": why,
                      "error": err}
        log(f"{head}: {st} in {wall:.0f} s" + (f" ({err})" if err else ""), flush=True)

    try:
        while pending or running:
            if pending and all(a in status for a in pending[0][1].after):
                i, s = pending[0]
                head = f"[{i}/{total}] {s.name}"
                bad = [a for a in s.after if status.get(a) not in ("ok", "skipped", "partial")]
                if bad:
                    pending.pop(0)
                    status[s.name] = "blocked"
                    msg = f"needs {', '.join(bad)}, which did not finish"
                    rows[s.name] = {"stage": s.name, "status": "blocked", "wall_s": 0.0,
                                    "reason": msg}
                    log(f"{head}: blocked ({msg})", flush=True)
                    continue
                if running and (len(running) >= parallel or s.exclusive or
                                any(by_name[n].exclusive for n in running)):
                    pass  # wait; hashed only once it can start: a running stage may write its inputs
                else:
                    pending.pop(0)
                    key = stage_key(s, cwd)
                    why = "forced" if (s.name in force or "all" in force) else \
                        up_to_date(s, key, state["stages"].get(s.name), cwd)
                    if why is None:
                        status[s.name] = "skipped"
                        last = state["stages"][s.name]
                        rows[s.name] = {"stage": s.name, "status": "skipped", "wall_s": 0.0,
                                        "reason": "up to date", "last_wall_s": last.get("wall_s")}
                        log(f"{head}: up to date, skipped (took {last.get('wall_s', 0):.0f} s when "
                            f"it ran {last.get('finished', '?')})", flush=True)
                        continue
                    beside = f" (beside {', '.join(running)})" if running else ""
                    log(f"\n{head}: running ({why}){beside}"
                        f"{' - ' + s.description if s.description else ''}\n"
                        f"    $ {' '.join(s.argv)}", flush=True)
                    t0 = time.perf_counter()
                    started[s.name] = _now()
                    try:
                        proc, pump = _start(s, cwd, env, stream, prefix=parallel > 1,
                                            pass_fds=tuple(pass_fds))
                    except OSError as e:
                        running[s.name] = (None, None, t0, key, why, head)
                        finish(s.name, 127, str(e))
                        continue
                    running[s.name] = (proc, pump, t0, key, why, head)
                    continue
            if not running:  # cannot happen: a stage's deps are earlier stages, started in order
                raise RuntimeError(f"stage {pending[0][1].name} waits on stages that never ran")
            # wait for a running stage to finish
            while True:
                done = [n for n, r in running.items() if r[0].poll() is not None]
                if done:
                    for n in done:
                        finish(n, running[n][0].returncode, None)
                    break
                time.sleep(0.1)
    except BaseException:  # Ctrl-C, SIGTERM (pipeline/__main__ raises on it), a bug here
        # the stages die with the job: stop them and record them as failed, so the rerun
        # runs them again (their outputs may be half-written)
        names = list(running)
        _stop(running)
        for n in names:
            state["stages"][n] = {"status": "failed", "key": None, "started": started.get(n),
                                  "finished": _now(), "exit_code": None,
                                  "error": "interrupted: the job was stopped"}
        save_state(state_path, state)
        if names:
            log(f"\njob interrupted: stopped {', '.join(names)}", flush=True)
        raise
    out = [rows[s.name] for s in stages]
    wall = time.perf_counter() - t_job
    job = {"started": started_job, "finished": _now(), "wall_s": round(wall, 1),
           "parallel": parallel, "ran": [r["stage"] for r in out if r["status"] != "skipped"],
           "statuses": {r["stage"]: r["status"] for r in out}}
    state["last_job"] = job
    if all(r["status"] not in ("skipped", "blocked") for r in out):
        state["last_job_every_stage_ran"] = job  # the from-scratch figure
    save_state(state_path, state)
    log(f"\njob: {sum(r['wall_s'] for r in out):.0f} s in stages, {wall:.0f} s in all",
        flush=True)
    return out
