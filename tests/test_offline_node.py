"""What an offline GPU node with its own PyTorch needs: the wheelhouse's pieces (pins,
requirement coverage, the ``pip --no-index`` install check, on wheels made here without the
network), entry points that do not import PyAV, decord or submitit, and the check's JSON
written after every part."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from launcher import wheelhouse
from launcher.gpu_check_steps import Check, CheckError, warnings_in

REPO = Path(__file__).resolve().parents[1]


def make_wheel(folder: Path, name: str, version: str, requires: list[str] = (),
               tag: str = "py3-none-any") -> Path:
    """A minimal installable wheel (one module, METADATA, WHEEL, RECORD)."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name.replace('-', '_')}.py", "VALUE = 1\n")
        archive.writestr(f"{dist}.dist-info/METADATA", meta)
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                         f"Root-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def test_every_package_of_the_wheelhouse_is_pinned_in_the_constraints():
    versions = wheelhouse.pins(REPO / "constraints.txt", wheelhouse.PACKAGES)
    assert versions["deepspeed"] == "0.19.8" and set(versions) == set(wheelhouse.PACKAGES)
    assert not {"av", "decord2", "submitit", "torch", "numpy"} & set(versions)
    with pytest.raises(wheelhouse.WheelhouseError, match="no pinned version of nothere"):
        wheelhouse.pins(REPO / "constraints.txt", ("pydantic", "nothere"))


def test_requirement_gaps_follow_markers_versions_and_what_the_node_has(tmp_path):
    wheels = [
        make_wheel(tmp_path, "alpha", "1.0", ["beta>=2", "torch>=2.0", "numpy",
                                              "gamma; python_version < '3.11'",
                                              "delta; extra == 'docs'"]),
        make_wheel(tmp_path, "beta", "2.1", ["epsilon==1.0"]),
    ]
    gaps = wheelhouse.requirement_gaps(wheels, "3.12")
    assert gaps == ["beta needs epsilon==1.0: not in the wheelhouse"]
    assert any("gamma" in g for g in wheelhouse.requirement_gaps(wheels, "3.10"))
    wheels.append(make_wheel(tmp_path, "epsilon", "0.9"))
    assert wheelhouse.requirement_gaps(wheels, "3.12") == [
        "beta needs epsilon==1.0: the wheelhouse has 0.9"]


def test_install_check_installs_offline_into_a_fresh_target_for_another_python(tmp_path):
    house = tmp_path / "house"
    house.mkdir()
    wheels = [make_wheel(house, "alpha", "1.0", ["beta"]), make_wheel(house, "beta", "2.0")]
    requirements = tmp_path / "requirements.txt"
    wheelhouse.write_requirements(wheels, requirements)
    assert requirements.read_text() == "alpha==1.0\nbeta==2.0\n"
    result = wheelhouse.install_check(house, requirements, "3.12", ["manylinux_2_17_x86_64"])
    assert result["would_install"] == ["alpha==1.0", "beta==2.0"]
    (house / "beta-2.0-py3-none-any.whl").unlink()
    with pytest.raises(wheelhouse.WheelhouseError, match="would fail for Python 3.12"):
        wheelhouse.install_check(house, requirements, "3.12", ["manylinux_2_17_x86_64"])
    # A CPython 3.12 binary wheel is not taken for 3.11.
    make_wheel(house, "beta", "2.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    assert wheelhouse.install_check(house, requirements, "3.12", ["manylinux_2_17_x86_64"])
    with pytest.raises(wheelhouse.WheelhouseError):
        wheelhouse.install_check(house, requirements, "3.11", ["manylinux_2_17_x86_64"])


def test_pip_is_told_the_nodes_python_and_platforms_and_binaries_only():
    options = wheelhouse.target_options("3.12", ["manylinux_2_28_x86_64", "manylinux2014_x86_64"])
    assert options[:3] == ["--only-binary=:all:", "--python-version", "3.12"]
    assert options.count("--platform") == 2


_BLOCKED = """
import runpy, sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("av", "decord", "submitit"):
            raise ImportError(f"{name} is not installed on this node")
sys.meta_path.insert(0, Refuse())
import launcher.cli, fpar.train, fpar.trainer, launcher.gpu_check_child, launcher.gpu_check_steps
launcher.cli.build_parser()  # every subcommand's module
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print(sorted(m for m in ("av", "decord", "submitit") if m in sys.modules))
"""


@pytest.mark.parametrize("entry", ["launcher.cli", "launcher.gpu_check"])
def test_entry_points_run_without_pyav_decord_and_submitit(entry):
    proc = subprocess.run([sys.executable, "-c", _BLOCKED, entry], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_warnings_in_a_childs_stderr_are_counted():
    stderr = ("x.py:3: UserWarning: slow path\n  warnings.warn(...)\n"
              "[2026-12-07 00:01:02,000] [WARNING] [engine.py:1] no ops\n"
              "[W1207 00:01:02.000 ProcessGroup.cpp:1] gloo\nINFO fine\n"
              "x.py:3: UserWarning: slow path\n")
    found = warnings_in(stderr)
    assert found["count"] == 4 and len(found["first"]) == 3


def test_the_summary_is_rewritten_after_every_part(tmp_path):
    out = tmp_path / "check.json"
    check = Check(argparse.Namespace(time_limit=60.0), tmp_path / "work", out)
    check.step("device", lambda: {"device": "cpu"})
    first = json.loads(out.read_text())
    assert list(first["steps"]) == ["device"] and not first["finished"] and not first["ok"]
    check.step("update", lambda: {"ok": False, "ratio_to_fp32": {"fp16": 0.01}})
    assert list(json.loads(out.read_text())["steps"]) == ["device", "update"]

    def broken():
        raise ValueError("no shards")

    with pytest.raises(CheckError, match="data: no shards"):
        check.step("data", broken)
    stopped = json.loads(out.read_text())
    assert stopped["stopped_by"] == "data: no shards" and not stopped["steps"]["data"]["ok"]
    done = check.write(finished=True, stopped_by=None)
    assert done["finished"] and not done["ok"]  # the update comparison failed


@pytest.mark.slow
def test_a_check_killed_half_way_leaves_the_parts_that_finished(tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.gpu_check", "--allow-cpu", "--precisions", "fp32",
         "--config", str(REPO / "configs/experiments/tiny_cpu.yaml"), "--set",
         "data.workers=0", "--segments", "40", "--participants", "3", "--size", "128x96",
         "--frames", "4", "--short-side", "96", "--batch-size", "2", "--steps", "4",
         "--skip-bench", "--work", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and "train_fp32" in json.loads(out.read_text())["steps"]:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the check ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    summary = json.loads(out.read_text())
    assert not summary["finished"] and not summary["ok"]
    assert list(summary["steps"])[:3] == ["device", "data", "train_fp32"]
    assert summary["steps"]["train_fp32"]["ok"] and summary["steps"]["train_fp32"]["tags"]
