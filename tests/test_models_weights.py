"""ImageNet weights with torchvision's key names, and ``fpar models``."""

from __future__ import annotations

import argparse
import json
from urllib.error import URLError

import pytest
import torch
import torchvision

from fpar.config import ConfigError
from fpar.models import ModelConfig, build_model, trunk
from fpar.models.cli import count_parameters
from fpar.models.cli import register

REQUIRED = {"sparnet", "baseline", "sparnet_cam", "egornn", "egornn_ms", "flow", "two_stream",
            "imprinting", "static_dynamic", "lsta", "tsn"}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared, busy machine extra threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def resnet34_file(tmp_path_factory):
    """A torchvision ResNet-34 state dict on disk (random values, real key names)."""
    torch.manual_seed(123)
    state = torchvision.models.resnet34().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet34.pth"
    torch.save(state, path)
    return path, state


def fpar_models(argv: list[str]) -> int:
    """Runs ``fpar models ARGS`` through the subcommand's own parser."""
    parser = argparse.ArgumentParser(prog="fpar")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", *argv])
    return args.func(args)


def small(name: str, pretrained: str, **kw) -> ModelConfig:
    return ModelConfig(name=name, num_classes={"class": 4}, pretrained=pretrained,
                       input_size=64, convlstm_hidden=8, ms_hidden=4, **kw)


def test_trunk_and_cam_fc_load_torchvision_weights(resnet34_file):
    path, state = resnet34_file
    torch.manual_seed(0)
    model = build_model(small("egornn", str(path)))
    trunk = model.trunk.state_dict()
    assert set(trunk) == {k for k in state if not k.startswith("fc.")}
    for key, value in trunk.items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(model.cam.fc.weight, state["fc.weight"])
    assert torch.equal(model.cam.fc.bias, state["fc.bias"])


def test_flow_conv1_is_rgb_mean_repeated_over_ten_channels(resnet34_file):
    path, state = resnet34_file
    torch.manual_seed(0)
    model = build_model(small("flow", str(path)))
    conv1 = model.flow.trunk.conv1.weight
    assert conv1.shape == (64, 10, 7, 7)
    rgb = state["conv1.weight"]
    for channel in range(10):
        assert torch.allclose(conv1[:, channel], rgb.mean(dim=1), atol=1e-7)
    assert torch.allclose(conv1[3, 7, 2, 2], rgb[3, :, 2, 2].sum() / 3, atol=1e-7)
    for key, value in model.flow.trunk.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(value, state[key]), key


@pytest.fixture
def no_download(monkeypatch):
    """Stands in for torchvision's download: records each attempt, fails like offline."""
    attempts = []

    def offline(weights):
        attempts.append(weights)
        raise URLError("no network")

    monkeypatch.setattr(trunk, "download_weights", offline)
    return attempts


def test_auto_reads_the_torch_hub_cache_named_by_torch_home(resnet34_file, tmp_path,
                                                           monkeypatch, no_download):
    path, state = resnet34_file
    checkpoints = tmp_path / "home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet34-b627a593.pth").symlink_to(path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    model = build_model(small("tsn", "auto"))
    assert torch.equal(model.trunk.layer3[2].conv2.weight, state["layer3.2.conv2.weight"])
    assert no_download == []  # a cached file is never fetched again


def test_auto_without_the_file_offline_stops_naming_file_and_place(tmp_path, monkeypatch,
                                                                  no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    expected = tmp_path / "empty" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    assert trunk.hub_file("resnet34") == expected
    with pytest.raises(trunk.PretrainedWeightsError) as err:
        build_model(small("tsn", "auto"))
    message = str(err.value)
    assert str(expected) in message and "no network" in message
    assert "https://download.pytorch.org/models/resnet34-b627a593.pth" in message
    assert "model.pretrained=none" in message and "ResNet34_Weights.IMAGENET1K_V1" in message
    assert no_download == [torchvision.models.ResNet34_Weights.IMAGENET1K_V1]
    assert isinstance(err.value, ConfigError)


def test_auto_online_uses_the_file_torchvision_downloads(resnet34_file, tmp_path, monkeypatch):
    path, state = resnet34_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))

    def download(weights):  # what torchvision's download leaves behind
        target = trunk.hub_file("resnet34")
        target.parent.mkdir(parents=True)
        target.write_bytes(path.read_bytes())

    assert trunk.imagenet_file(small("tsn", "auto"), fetch=download) == trunk.hub_file("resnet34")
    model = build_model(small("tsn", "auto"))
    assert torch.equal(model.trunk.conv1.weight, state["conv1.weight"])


def test_none_starts_from_random_weights_without_looking(tmp_path, monkeypatch, no_download):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert trunk.imagenet_state(small("tsn", "none")) == (None, "random init (pretrained: none)")
    torch.manual_seed(0)
    first = build_model(small("tsn", "none")).trunk.conv1.weight
    torch.manual_seed(1)
    assert not torch.equal(first, build_model(small("tsn", "none")).trunk.conv1.weight)
    assert no_download == []


def test_bad_weight_files_are_named(resnet34_file, tmp_path):
    path, state = resnet34_file
    with pytest.raises(trunk.PretrainedWeightsError, match="nothere.pth"):
        build_model(small("tsn", str(tmp_path / "nothere.pth")))
    with pytest.raises(ValueError, match=r"resnet34\.pth: missing .*wrong model.backbone"):
        build_model(small("tsn", str(path), backbone="resnet50"))
    with pytest.raises(ValueError, match=r"resnet34\.pth: .* keys the resnet18 trunk does not"):
        build_model(small("tsn", str(path), backbone="resnet18"))
    # A trunk cut after layer3 takes a full file and leaves its layer4 out.
    cut = build_model(small("tsn", str(path), features_from="conv4_x"))
    assert torch.equal(cut.trunk.layer3[5].bn2.weight, state["layer3.5.bn2.weight"])
    partial = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, partial)
    with pytest.raises(ValueError, match="partial.pth: missing"):
        build_model(small("tsn", str(partial)))


def test_fpar_models_json_lists_every_system_and_sparnet_size(capsys):
    assert fpar_models(["--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert REQUIRED <= set(rows)
    assert all(r["description"] for r in rows.values())
    assert 35e6 <= rows["sparnet"]["parameters"] <= 45e6
    # The MS head is the only difference between SparNet and the baseline.
    ms_head = 512 * 100 + 100 + 100 * 49 * 98 + 98
    assert rows["sparnet"]["parameters"] - rows["baseline"]["parameters"] == ms_head
    assert rows["two_stream"]["parameters"] > rows["egornn"]["parameters"]


def test_meta_device_count_equals_a_real_build():
    cfg = ModelConfig(name="imprinting", num_classes={"class": 61}, backbone="resnet18",
                      pretrained="none", input_size=64, convlstm_hidden=32)
    real = sum(p.numel() for p in build_model(cfg).parameters())
    assert count_parameters(cfg) == real


def test_fpar_models_text_and_bad_size(capsys):
    assert fpar_models(["--format", "gtea61", "--backbone", "resnet18"]) == 0
    out = capsys.readouterr().out
    assert "{'class': 61}" in out and "sparnet" in out and " M " in out
    assert fpar_models(["--input-size", "16"]) == 2
    assert "input_size" in capsys.readouterr().err
