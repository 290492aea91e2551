"""Reusable fixtures on generated data; import the ones a test module needs, e.g.
``from fixtures import synthetic_epic55_shards``.

Generation and shard building run in a child process: the shard builder starts worker
processes by spawning, which re-imports the caller's main module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_BUILD = """
import sys
from pathlib import Path
from shards.build import BuildConfig, build_shards
from shards.synth import generate

def main(out, splits):
    kitchens = generate("epic55", out / "kitchens", participants=3, segments=24, seed=0,
                        width=128, height=96)
    for split in splits:
        report = build_shards(BuildConfig(
            format="epic55", root=str(kitchens / "videos"),
            annotations=str(kitchens / "annotations"), split=split,
            out=str(out / "shards" / split), frames=4, short_side=96), progress=False)
        if report.failures:
            raise SystemExit(f"{split}: {report.failures[:3]}")

if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
"""


def build_synthetic_epic55(out: Path, splits: tuple[str, ...] = ("train", "s1")) -> Path:
    """Synthetic EPIC-55 kitchens (3 participants, 24 segments, 128x96) and their shards
    (4 frames per segment) under ``out/shards/<split>``; returns ``out/shards``."""
    script = out / "build_synthetic.py"
    out.mkdir(parents=True, exist_ok=True)
    script.write_text(_BUILD)
    proc = subprocess.run([sys.executable, str(script), str(out), *splits], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"building synthetic shards failed:\n{proc.stderr[-4000:]}")
    return out / "shards"


@pytest.fixture(scope="session")
def synthetic_epic55_shards(tmp_path_factory) -> Path:
    """Shard folders ``train`` (12 segments) and ``s1`` (4 segments) of synthetic EPIC-55."""
    return build_synthetic_epic55(tmp_path_factory.mktemp("synthetic_epic55"))


def step_losses(run_dir: Path) -> dict[int, float]:
    """Loss of every step of a run's ``metrics.jsonl``; after a resume the re-run steps
    replace the killed run's."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "step":
            losses[record["step"]] = record["loss"]
    return losses
