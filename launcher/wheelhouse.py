"""``make wheelhouse``: what an offline GPU node with its own PyTorch needs to run the check.

``python -m launcher.wheelhouse --out DIR [--python-version 3.12] [--platform TAG ...]``
writes into ``DIR``:

* the wheels of the packages fpar needs beyond what such a node has (``NODE_PROVIDES``:
  torch, torchvision, numpy, OpenCV, pandas, Pillow, matplotlib, TensorBoard), at the
  versions of ``constraints.txt``, binary only, for the chosen Python and platforms;
  DeepSpeed as a pure-Python wheel built here from its source (no op prebuilt: fpar uses
  torch's Adam, and DeepSpeed compiles an op on first use only);
* ``requirements.txt``: those wheels, pinned, for ``pip install --no-deps``;
* ``shards/train`` and ``shards/s1``: small synthetic EPIC-55 shards for ``--shards``;
* ``manifest.json``: the files and their sizes.

Every wheel's own requirements (markers evaluated for the chosen Python on Linux) are
checked against the wheelhouse and ``NODE_PROVIDES``, the install is tried with
``pip install --dry-run --no-index`` into a fresh target folder for the chosen Python and
platforms, and the whole must stay under ``--max-mib`` (40). PyAV, decord and submitit are
left out: the check reads prebuilt shards and submits nothing. On the node:
``make gpu-check-node`` (see the README, "GPU").
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: What fpar imports on a GPU node that such a node lacks, with their own requirements.
PACKAGES = ("deepspeed", "pydantic", "pydantic_core", "annotated-types", "typing-inspection",
            "typing_extensions", "hjson", "msgpack", "ninja", "py-cpuinfo", "psutil", "einops",
            "packaging", "PyYAML", "tqdm")
#: Built here from source, pure Python.
BUILT_HERE = ("deepspeed",)
#: What a PyTorch GPU node comes with (and what those bring along).
NODE_PROVIDES = ("torch", "torchvision", "numpy", "opencv-python", "opencv-python-headless",
                 "pandas", "pillow", "matplotlib", "tensorboard", "filelock", "sympy",
                 "networkx", "jinja2", "fsspec", "setuptools")
DEFAULT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
SHARDS = {"segments": 160, "participants": 2, "size": "456x256", "frames": 8,
          "short_side": 256}


class WheelhouseError(RuntimeError):
    """The wheelhouse cannot be built or would not install: the message says why."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(constraints: Path, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: version}`` of ``names`` in a ``name==version`` constraints file."""
    found = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            found[canonical(name)] = version
    missing = [n for n in names if canonical(n) not in found]
    if missing:
        raise WheelhouseError(f"{constraints}: no pinned version of {', '.join(missing)}")
    return {n: found[canonical(n)] for n in names}


def target_options(python_version: str, platforms: list[str]) -> list[str]:
    """pip options selecting binary wheels for another interpreter and platform."""
    options = ["--only-binary=:all:", "--python-version", python_version,
               "--implementation", "cp"]
    for platform in platforms:
        options += ["--platform", platform]
    return options


def wheel_metadata(wheel: Path) -> tuple[str, str, list[str]]:
    """``(name, version, Requires-Dist lines)`` of a wheel file."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next((n for n in archive.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if meta is None:
            raise WheelhouseError(f"{wheel}: no .dist-info/METADATA")
        message = email.parser.Parser().parsestr(archive.read(meta).decode("utf-8"))
    return message["Name"], message["Version"], message.get_all("Requires-Dist") or []


def requirement_gaps(wheels: list[Path], python_version: str,
                     provided: tuple[str, ...] = NODE_PROVIDES) -> list[str]:
    """Requirements of ``wheels`` met neither by another of them (at a matching version)
    nor by the node, for ``python_version`` on Linux (extras are not installed)."""
    from packaging.requirements import Requirement

    environment = {"python_version": python_version, "python_full_version": python_version + ".0",
                   "sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "os_name": "posix",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython",
                   "extra": ""}
    have = {}
    for wheel in wheels:
        name, version, _ = wheel_metadata(wheel)
        have[canonical(name)] = version
    node = {canonical(n) for n in provided}
    gaps = []
    for wheel in wheels:
        name, _, requires = wheel_metadata(wheel)
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(environment):
                continue
            key = canonical(req.name)
            if key in node:
                continue
            if key not in have:
                gaps.append(f"{name} needs {text}: not in the wheelhouse")
            elif not req.specifier.contains(have[key], prereleases=True):
                gaps.append(f"{name} needs {text}: the wheelhouse has {have[key]}")
    return gaps


def install_check(wheelhouse: Path, requirements: Path, python_version: str,
                  platforms: list[str]) -> dict:
    """``pip install --dry-run --no-index`` of ``requirements`` from ``wheelhouse`` into a
    fresh target folder, for ``python_version`` and ``platforms``; returns what would be
    installed; raises WheelhouseError with pip's message when it would fail."""
    with tempfile.TemporaryDirectory(prefix="fpar-wheelhouse-target-") as target:
        report = Path(target) / "report.json"
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                "--no-deps", "--find-links", str(wheelhouse), "--target",
                str(Path(target) / "site"), "--report", str(report), "--quiet",
                *target_options(python_version, platforms), "-r", str(requirements)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PIP_NO_INPUT": "1"})
        if proc.returncode != 0:
            raise WheelhouseError(f"pip install --no-index from {wheelhouse} would fail for "
                                  f"Python {python_version}: {proc.stderr.strip()[-2000:]}")
        installed = json.loads(report.read_text())["install"]
    return {"python_version": python_version, "platforms": platforms,
            "would_install": sorted(f"{i['metadata']['name']}=={i['metadata']['version']}"
                                    for i in installed)}


def write_requirements(wheels: list[Path], path: Path) -> None:
    lines = sorted(f"{name}=={version}" for name, version, _ in map(wheel_metadata, wheels))
    path.write_text("\n".join(lines) + "\n")


def _run(argv: list[str], what: str, env: dict | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise WheelhouseError(f"{what} failed (exit {proc.returncode}):\n"
                              f"{(proc.stdout + proc.stderr).strip()[-3000:]}")


def download(out: Path, versions: dict[str, str], python_version: str,
             platforms: list[str]) -> None:
    """The binary wheels from the package index, and DeepSpeed built here (network)."""
    pip = [sys.executable, "-m", "pip"]
    wanted = [f"{n}=={v}" for n, v in versions.items() if n not in BUILT_HERE]
    _run([*pip, "download", "--no-deps", "--dest", str(out),
          *target_options(python_version, platforms), *wanted], "pip download")
    built = [f"{n}=={v}" for n, v in versions.items() if n in BUILT_HERE]
    # DS_BUILD_OPS=0: no op compiled into the wheel, which is then py3-none-any.
    _run([*pip, "wheel", "--no-deps", "--no-cache-dir", "--no-build-isolation",
          "--no-binary", ",".join(BUILT_HERE), "--wheel-dir", str(out), *built],
         "building DeepSpeed's wheel", env={"DS_BUILD_OPS": "0"})


def build_shards(out: Path) -> None:
    """Small synthetic EPIC-55 train and s1 shards (the check's ``--shards``)."""
    fpar = [sys.executable, "-m", "launcher.cli"]
    width, height = SHARDS["size"].split("x")
    with tempfile.TemporaryDirectory(prefix="fpar-wheelhouse-synth-") as tmp:
        _run([*fpar, "synth", "--format", "epic55", "--out", tmp, "--participants",
              str(SHARDS["participants"]), "--segments", str(SHARDS["segments"]), "--seed", "0",
              "--width", width, "--height", height], "fpar synth")
        for split in ("train", "s1"):
            _run([*fpar, "shards", "build", "--format", "epic55", "--root", f"{tmp}/videos",
                  "--annotations", f"{tmp}/annotations", "--split", split, "--out",
                  str(out / split), "--frames", str(SHARDS["frames"]), "--short-side",
                  str(SHARDS["short_side"]), "--no-progress"], f"fpar shards build ({split})")


def sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file()}


def build(out: Path, python_version: str, platforms: list[str], max_mib: float) -> dict:
    """Builds the wheelhouse in ``out`` (emptied first if it is one) and checks it."""
    if out.exists():
        if not (out / "manifest.json").is_file() and any(out.iterdir()):
            raise WheelhouseError(f"{out} exists and is not a wheelhouse; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    versions = pins(REPO / "constraints.txt", PACKAGES)
    download(out, versions, python_version, platforms)
    wheels = sorted(out.glob("*.whl"))
    gaps = requirement_gaps(wheels, python_version)
    if gaps:
        raise WheelhouseError("the wheelhouse would not be complete:\n" + "\n".join(gaps))
    write_requirements(wheels, out / "requirements.txt")
    build_shards(out / "shards")
    installed = install_check(out, out / "requirements.txt", python_version, platforms)
    files = sizes(out)
    total = sum(files.values())
    manifest = {"python_version": python_version, "platforms": platforms,
                "total_bytes": total, "total_mib": round(total / 2**20, 2),
                "wheels_mib": round(sum(v for k, v in files.items() if k.endswith(".whl"))
                                    / 2**20, 2),
                "shards_mib": round(sum(v for k, v in files.items() if k.startswith("shards"))
                                    / 2**20, 2),
                "install_check": installed, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if total > max_mib * 2**20:
        raise WheelhouseError(f"{out}: {total / 2**20:.1f} MiB, more than --max-mib {max_mib}")
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launcher.wheelhouse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="wheelhouse", help="folder to write (default wheelhouse)")
    p.add_argument("--python-version", default="3.12", help="the node's Python (default 3.12)")
    p.add_argument("--platform", dest="platforms", action="append",
                   help=f"wheel platform tag, repeatable (default {' '.join(DEFAULT_PLATFORMS)})")
    p.add_argument("--max-mib", type=float, default=40.0, help="size limit (default 40)")
    args = p.parse_args(argv)
    try:
        manifest = build(Path(args.out).resolve(), args.python_version,
                         args.platforms or list(DEFAULT_PLATFORMS), args.max_mib)
    except WheelhouseError as err:
        print(f"wheelhouse: {err}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
