"""``fpar models``: the registered models, their parameter counts and what they are."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from fpar.models.config import ModelConfig
from fpar.models.registry import build_model, list_models
from shards.datasets import dataset_names, get_dataset


def head_layout(fmt: str) -> dict[str, int]:
    """Classifier heads for a dataset, its scored tasks: verb + noun on EPIC, one action
    class on GTEA-61 and EGTEA."""
    dataset = get_dataset(fmt)
    return {task: dataset.num_classes[task] for task in dataset.tasks}


def count_parameters(cfg: ModelConfig) -> int:
    """Number of parameters of the model ``cfg`` describes (built on the meta device)."""
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def describe_models(fmt: str = "epic55", backbone: str = "resnet34",
                    input_size: int = 224) -> list[dict]:
    """``[{"name", "parameters", "description"}]`` for every model with ``fmt``'s heads."""
    heads = head_layout(fmt)
    rows = []
    for entry in list_models():
        cfg = ModelConfig(name=entry["name"], num_classes=heads, backbone=backbone,
                          pretrained="none", input_size=input_size)
        rows.append({"name": entry["name"], "parameters": count_parameters(cfg),
                     "description": entry["description"]})
    return rows


def _run(args: argparse.Namespace) -> int:
    try:
        rows = describe_models(args.format, args.backbone, args.input_size)
    except ValueError as err:
        print(f"fpar models: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"heads for {args.format}: {head_layout(args.format)}; {args.backbone}, "
          f"{args.input_size} px input")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['parameters'] / 1e6:7.2f} M  {r['description']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``fpar models``."""
    parser = subparsers.add_parser(
        "models",
        help="list the models with their parameter counts",
        description="List every registered model (the values of model.name) with its "
        "parameter count for a dataset's classifier heads and a one-line description.",
    )
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {name, parameters, description}")
    parser.add_argument("--format", choices=dataset_names(), default="epic55",
                        help="dataset whose heads are counted: epic55/epic100 verb + noun, "
                        "gtea61/egtea one action class (default: epic55)")
    parser.add_argument("--backbone", choices=("resnet18", "resnet34", "resnet50"),
                        default="resnet34", help="trunk depth (default: resnet34)")
    parser.add_argument("--input-size", type=int, default=224,
                        help="crop side in pixels; sets the MS head's size (default: 224)")
    parser.set_defaults(func=_run)
