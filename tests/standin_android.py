"""A stand-in adb and a stand-in phone for tests (test_edge_eval, test_android_app,
test_device_drift).

The adb re-splits ``adb shell`` arguments as a device shell does; its device keeps files in a
folder. ``am start`` of the app's benchmark mode answers with the record in $FAKE_APP_RECORD;
of its accuracy mode, runs tests/standin/StandInPhone.java: the Java core's real accuracy mode
(EvalFolder, Preprocessor, EvaluationLoop, PredictionWriter) with the host's LiteRT for
inference and the faults of $FAKE_FAULTS.
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAND_IN_ADB = r'''#!{python}
"""A stand-in adb: logs its argv, keeps a fake device in $FAKE_DEVICE, answers like adb.

``adb shell`` behaves as on a device: the arguments are joined with spaces into one command
line, which a real shell (bash here; mksh on Android) parses again - quotes, ``;``, ``$()``,
``${{IFS}}`` and all - with every command it runs (``am``, ``ls``, ``touch``, ...) answered by
this script's ``__device__`` mode inside the fake device folder (relative paths land there too).
"""
import json, os, shlex, shutil, subprocess, sys
dev = os.environ["FAKE_DEVICE"]
local = lambda p: os.path.join(dev, p.lstrip("/"))
args = sys.argv[1:]


def device(cmd):
    """One command as the device's shell split it."""
    with open(os.path.join(dev, "device_commands.jsonl"), "a") as f:
        f.write(json.dumps(cmd) + "\n")
    name = os.path.basename(cmd[0])
    if name == "getprop":
        print({{"ro.product.model": "Pixel 8", "ro.build.version.sdk": "34"}}.get(cmd[1], ""))
    elif name == "ls":
        sys.exit(0 if os.path.exists(local(cmd[1])) else 1)
    elif name in ("mkdir", "chmod"):
        if name == "mkdir":
            os.makedirs(local(cmd[-1]), exist_ok=True)
    elif name == "rm":
        for p in (a for a in cmd[1:] if not a.startswith("-")):
            if os.path.isdir(local(p)):
                shutil.rmtree(local(p), ignore_errors=True)
            elif os.path.exists(local(p)):
                os.remove(local(p))
    elif name == "touch":
        for p in cmd[1:]:
            open(local(p) if p.startswith("/") else os.path.join(dev, p), "a").close()
    elif name == "benchmark_model":
        print(open(os.environ["FAKE_BENCH_OUTPUT"]).read())
    elif name == "am" and cmd[1:2] == ["start"]:
        ex, i = {{}}, 2
        while i < len(cmd):
            if cmd[i] in ("--es", "--ei"):
                ex[cmd[i + 1]] = cmd[i + 2]
                i += 3
            else:
                i += 1
        component = cmd[cmd.index("-n") + 1]
        if os.environ.get("FAKE_APP_MISSING"):  # what am prints for an app not installed
            print("Starting: Intent {{ cmp=" + component + " }}")
            print("Error type 3")
            print("Error: Activity class {{" + component + "}} does not exist.")
            sys.exit(0)
        with open(os.path.join(dev, "app_extras.json"), "w") as f:
            json.dump(ex, f)
        if "output" not in ex:  # as the real app: no output path, no result (it would die)
            sys.exit(0)
        if ex.get("mode") == "accuracy":  # the stand-in phone: the app's accuracy mode
            p = subprocess.run([os.environ["FAKE_JAVA"], "-cp", os.environ["FAKE_PHONE_CLASSES"],
                                "StandInPhone", json.dumps(ex), dev, os.environ["FAKE_PYTHON"]],
                               capture_output=True, text=True)
            with open(os.path.join(dev, "phone.log"), "a") as f:
                f.write(p.stdout + p.stderr)
            sys.exit(0)
        recs = []
        crash = os.environ.get("FAKE_APP_CRASH_ON")
        out = local(ex["output"])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        for d in ex["delegates"].split(","):
            if d == crash:  # the process dies here: what was written stays, no .done
                sys.exit(0)
            r = json.load(open(os.environ["FAKE_APP_RECORD"]))
            r["delegate"] = {{"CPU": "xnnpack", "GPU": "gpu", "NNAPI": "nnapi"}}[d]
            r["threads"] = int(ex["threads"])
            recs.append(r)
            json.dump(recs, open(out, "w"))  # as the app: rewritten after every delegate
        open(out + ".done", "w").close()
    else:
        print(f"/system/bin/sh: {{cmd[0]}}: inaccessible or not found", file=sys.stderr)
        sys.exit(127)


if args[:1] == ["__device__"]:
    device(args[1:])
    sys.exit(0)
with open(os.path.join(dev, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:1] == ["devices"]:
    print("List of devices attached")
    for s in os.environ.get("FAKE_SERIALS", "").split():
        print(s + "\tdevice")
    sys.exit(0)
assert args[0] == "-s", args
args = args[2:]
if args[0] == "push":
    os.makedirs(os.path.dirname(local(args[2])), exist_ok=True)
    (shutil.copytree if os.path.isdir(args[1]) else shutil.copy)(args[1], local(args[2]))
elif args[0] == "pull":
    shutil.copy(local(args[1]), args[2])
elif args[0] == "shell":
    line = " ".join(args[1:])  # what adb sends the device
    me = [sys.executable, os.path.abspath(__file__), "__device__"]
    handler = " ".join(shlex.quote(a) for a in me)
    pushed = [p for p in ("/data/local/tmp/benchmark_model",) if os.path.exists(local(p))]
    prelude = f"command_not_found_handle() {{{{ {{handler}} \"$@\"; }}}}; " + "".join(
        f"function {{p}} {{{{ {{handler}} {{p}} \"$@\"; }}}}; " for p in pushed)
    r = subprocess.run([shutil.which("bash"), "-c", prelude + line], cwd=dev, capture_output=True, text=True,
                       env={{k: v for k, v in os.environ.items() if k.startswith("FAKE_")}}
                       | {{"PATH": "/nonexistent"}})
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    sys.exit(r.returncode)
'''


def install_adb(tmp_path, monkeypatch):
    """(the stand-in adb's path, its device folder); the environment it reads is set."""
    exe = tmp_path / "adb"
    exe.write_text(STAND_IN_ADB.format(python=sys.executable))
    exe.chmod(0o755)
    dev = tmp_path / "device"
    dev.mkdir()
    monkeypatch.setenv("FAKE_DEVICE", str(dev))
    monkeypatch.setenv("FAKE_SERIALS", "emulator-5554")
    return str(exe), dev


def phone_classes(out_dir: str) -> str:
    """tests/standin/StandInPhone.java and the Android core compiled into ``out_dir``."""
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError("no JDK: apt-get install default-jdk-headless")
    core = os.path.join(ROOT, "android_demo", "core", "src", "main", "java")
    p = subprocess.run([javac, "-d", out_dir, "-sourcepath", core,
                        os.path.join(ROOT, "tests", "standin", "StandInPhone.java")],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(p.stderr[-2000:])
    return out_dir


ARM_PYTHON = os.path.expanduser("~/.cache/inception-edge/arm64-phone/python")


def install_phone(tmp_path, monkeypatch, faults=None, fp16_keras=None, arm=False):
    """Makes the stand-in adb's app answer the accuracy mode with the stand-in phone; ``arm``:
    its CPU accelerator runs on arm64 kernels (scripts/arm_phone.sh's Python under qemu)."""
    import json

    classes = phone_classes(str(tmp_path / "phone_classes"))
    monkeypatch.setenv("FAKE_JAVA", shutil.which("java"))
    monkeypatch.setenv("FAKE_PHONE_CLASSES", classes)
    monkeypatch.setenv("FAKE_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_REPO", ROOT)
    monkeypatch.setenv("FAKE_FAULTS", json.dumps(faults or {}))
    if fp16_keras:
        monkeypatch.setenv("FAKE_FP16_KERAS", fp16_keras)
    if arm:
        if not os.access(ARM_PYTHON, os.X_OK):
            raise RuntimeError(f"no arm64 Python at {ARM_PYTHON}: bash scripts/arm_phone.sh")
        monkeypatch.setenv("FAKE_ARM_PYTHON", ARM_PYTHON)


class _Env:
    """monkeypatch's setenv for a plain run (the __main__ below)."""

    @staticmethod
    def setenv(k, v):
        os.environ[k] = v


def main(argv=None) -> int:
    """python tests/standin_android.py ARTIFACTS RESULTS [--accelerators cpu,gpu,npu]
    [--faults JSON] [--only a,b] [--arm]: `edge_eval android accuracy` against the stand-in
    phone (the
    demo's device rows in the README come from this)."""
    import argparse
    import json
    import pathlib
    import tempfile

    sys.path.insert(0, ROOT)
    p = argparse.ArgumentParser()
    p.add_argument("artifacts")
    p.add_argument("results")
    p.add_argument("--accelerators", default="cpu,gpu,npu")
    p.add_argument("--faults", default="{}")
    p.add_argument("--only")
    p.add_argument("--max-top1-drift", type=float)
    p.add_argument("--arm", action="store_true",
                   help="the CPU accelerator on arm64 kernels (scripts/arm_phone.sh)")
    a = p.parse_args(argv)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="standin-phone-"))
    adb, _ = install_adb(tmp, _Env)
    install_phone(tmp, _Env, json.loads(a.faults), arm=a.arm)
    from edge_eval.__main__ import main as edge_eval

    return edge_eval(["android", "accuracy", a.artifacts, "--out", a.results, "--adb", adb,
                      "--accelerators", a.accelerators, "--threads", "1", "--no-strict"]
                     + (["--only", a.only] if a.only else [])
                     + (["--max-top1-drift", str(a.max_top1_drift)]
                        if a.max_top1_drift is not None else []))


if __name__ == "__main__":
    sys.exit(main())
