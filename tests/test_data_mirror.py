"""Horizontal flips and labels: a mirrored clip of a mirror-pair class takes the other class."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fpar.data.clip import make_clip
from fpar.data.config import DataConfig
from fpar.experiment import load_experiment
from shards.schema import encode_sample, sample_key
from shards.synth.vocab import VERBS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def synthetic_sample(verb: int) -> dict:
    """A synthetic-kitchen sample of ``verb`` whose frames are not mirror-symmetric."""
    rng = np.random.default_rng(verb)
    frames = (rng.random((4, 48, 64, 3)) * 255).astype(np.uint8)
    motion = (rng.random((4, 12, 16)) * 255).astype(np.uint8)
    meta = {"dataset": "epic55", "segment_id": f"P01_1_{verb}", "verb_class": verb,
            "noun_class": 2, "class_id": -1}
    raw = encode_sample(meta, frames, motion)
    raw["__key__"] = sample_key(meta["segment_id"])
    return raw


def flipped_and_upright(data: DataConfig, verb: int) -> tuple[list[dict], list[dict]]:
    """Training clips over 16 epochs, sorted by whether their crop was mirrored.

    With ``flip`` off the same seed draws the same frames and crop, only never mirrored,
    so a clip was flipped exactly when its frames are the mirror image of that one's.
    """
    raw = synthetic_sample(verb)
    upright_cfg = dataclasses.replace(data, flip=False)
    flipped, upright = [], []
    for epoch in range(16):
        clip = make_clip(raw, data, train=True, seed=3, epoch=epoch)
        plain = make_clip(raw, upright_cfg, train=True, seed=3, epoch=epoch)
        if np.array_equal(clip["frames"], plain["frames"][:, :, ::-1]):
            flipped.append(clip)
        else:
            assert np.array_equal(clip["frames"], plain["frames"])
            upright.append(clip)
    assert flipped and upright  # both cases were drawn
    return flipped, upright


def test_synthetic_config_declares_move_left_right_as_its_mirror_pair():
    data = load_experiment(CONFIGS / "experiments" / "tiny_cpu.yaml").data
    assert data.flip
    pairs = [tuple(VERBS[c] for c in pair) for pair in data.mirror_pairs["verb"]]
    assert pairs == [("move-left", "move-right")]
    assert load_experiment(CONFIGS / "experiments" / "demo.yaml").data.mirror_pairs == \
        data.mirror_pairs
    for real in ("epic55_sparnet_conv5", "epic100_baseline", "gtea61_egornn", "egtea_baseline"):
        assert load_experiment(CONFIGS / "experiments" / f"{real}.yaml").data.mirror_pairs == {}


@pytest.mark.parametrize("verb, mirrored", [("move-left", "move-right"),
                                            ("move-right", "move-left")])
def test_flipped_synthetic_clip_takes_the_mirrored_verb(verb, mirrored):
    data = load_experiment(CONFIGS / "experiments" / "tiny_cpu.yaml",
                           ["data.crop_size=32"]).data
    flipped, upright = flipped_and_upright(data, VERBS.index(verb))
    assert {VERBS[c["verb"]] for c in flipped} == {mirrored}
    assert {VERBS[c["verb"]] for c in upright} == {verb}
    assert {c["noun"] for c in flipped + upright} == {2}  # nouns do not mirror


def test_classes_outside_pairs_keep_their_label_when_flipped():
    data = DataConfig(crop_size=32, num_frames=2, mirror_pairs={"verb": [(6, 7)]})
    flipped, _ = flipped_and_upright(data, VERBS.index("stir"))
    assert {c["verb"] for c in flipped} == {VERBS.index("stir")}


def test_mirror_pairs_are_checked():
    with pytest.raises(ValueError, match="in two pairs"):
        DataConfig(mirror_pairs={"verb": [(6, 7), (7, 8)]})
    with pytest.raises(ValueError, match="two different class ids"):
        DataConfig(mirror_pairs={"verb": [(3, 3)]})
    with pytest.raises(ValueError, match="unknown label key"):
        DataConfig(mirror_pairs={"action": [(1, 2)]})
    data = DataConfig(mirror_pairs={"verb": [(6, 7)]})
    assert [data.mirrored("verb", c) for c in (5, 6, 7)] == [5, 7, 6]
    assert data.mirrored("noun", 6) == 6
