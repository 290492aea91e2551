"""Config loading: types, unknown keys, missing values, overrides, _base_ composition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import yaml

from fpar.config import ConfigError, from_dict, load_config, save_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    milestones: list[int] = field(default_factory=lambda: [10, 20])
    schedule: Literal["step", "cosine"] = "step"


@dataclass
class Model:
    name: str
    hidden: int = 512
    tap: Optional[str] = None


@dataclass
class Root:
    model: Model
    optim: Optim = field(default_factory=Optim)
    seed: int = 0
    amp: bool = False


def test_builds_nested_dataclasses_and_converts_int_to_float():
    cfg = from_dict(Root, {"model": {"name": "sparnet"}, "optim": {"lr": 1}})
    assert cfg.model.name == "sparnet" and cfg.model.hidden == 512
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_unknown_key_names_key_and_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'model.hiden'.*'hidden'"):
        from_dict(Root, {"model": {"name": "x", "hiden": 3}})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"model.hidden: expected int"):
        from_dict(Root, {"model": {"name": "x", "hidden": "big"}})
    with pytest.raises(ConfigError, match=r"optim.milestones\[1\]: expected int"):
        from_dict(Root, {"model": {"name": "x"}, "optim": {"milestones": [1, "a"]}})
    with pytest.raises(ConfigError, match=r"amp: expected bool"):
        from_dict(Root, {"model": {"name": "x"}, "amp": 1})


def test_literal_and_missing_value():
    with pytest.raises(ConfigError, match=r"optim.schedule: 'linear' is not one of"):
        from_dict(Root, {"model": {"name": "x"}, "optim": {"schedule": "linear"}})
    with pytest.raises(ConfigError, match=r"missing value for 'model.name'"):
        from_dict(Root, {"model": {}})
    with pytest.raises(ConfigError, match=r"missing value for 'model'"):
        from_dict(Root, {})


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"model": {"name": "a", "hidden": 8}, "seed": 1}))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"_base_": "base.yaml", "model": {"name": "b"}}))
    cfg = load_config(Root, tmp_path / "exp.yaml", ["optim.lr=0.5", "model.tap=conv4_x", "amp=true"])
    assert (cfg.model.name, cfg.model.hidden, cfg.seed) == ("b", 8, 1)
    assert cfg.optim.lr == 0.5 and cfg.model.tap == "conv4_x" and cfg.amp is True
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'"):
        load_config(Root, tmp_path / "exp.yaml", ["optim.lrr=0.5"])
    with pytest.raises(ConfigError, match=r"not of the form"):
        load_config(Root, tmp_path / "exp.yaml", ["optim.lr"])


def test_saved_config_round_trips(tmp_path):
    cfg = from_dict(Root, {"model": {"name": "sparnet", "tap": "conv3_x"}, "optim": {"milestones": [3]}})
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(Root, tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Root, tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Root, tmp_path / "bad.yaml")


def test_atomic_write_follows_umask(tmp_path):
    import os

    from shards.files import atomic_write_json, read_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert read_json(tmp_path / "x.json") == {"a": 1}
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
