"""``fpar bench train``: step time of the DeepSpeed engine vs a plain PyTorch loop.

For SparNet and the baseline, the same model (same seed), batch (random, in memory),
precision and Adam parameter groups are stepped two ways in this process: through the
engine ``fpar train`` uses (:func:`fpar.engine.deepspeed_setup.initialize`: forward,
``engine.backward``, ``engine.step``) and through a plain loop (forward, ``backward``,
gradient clip if configured, ``optimizer.step``, scheduler step). The four are stepped in
turn, one step each, so that load from other processes slows them alike; each reports its
median step time after the warm-up steps. Figures: engine / plain (goal <= 1.05) and
SparNet / baseline (the MS head's cost; the paper reports +7.8%).
"""

from __future__ import annotations

import argparse
import time

DESCRIPTION = ("training step time: DeepSpeed engine vs plain PyTorch loop, SparNet vs "
               "baseline (data in memory)")

GOAL_ENGINE_OVERHEAD = 1.05
SYSTEMS = ("sparnet", "baseline")
LOOPS = ("deepspeed", "plain")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fpar bench train``."""
    from launcher.demo import SCALES

    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="demo scale whose model and input are timed (default: default)")
    parser.add_argument("--backbone", choices=("resnet18", "resnet34", "resnet50"),
                        help="override the scale's backbone (the paper: resnet34, with "
                        "--features-from conv5_x)")
    parser.add_argument("--features-from", choices=("conv4_x", "conv5_x"),
                        help="override where the ConvLSTM (and MS head) tap the backbone")
    parser.add_argument("--crop", type=int, help="override the input side (paper: 224)")
    parser.add_argument("--frames", type=int, help="override frames per clip")
    parser.add_argument("--batch-size", type=int, help="override clips per step")
    parser.add_argument("--hidden", type=int, help="override the ConvLSTM width (paper: 512)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="fp32 (default) or bf16; the plain loop runs bf16 under "
                        "torch.autocast, the engine with bf16 weights")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps per system and loop (default 20)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and batch")


def experiment(args: argparse.Namespace, system: str):
    """The demo's experiment for ``system`` at ``--scale``, with this benchmark's overrides."""
    from fpar.experiment import load_experiment
    from launcher import demo

    scale = demo.SCALES[args.scale]
    in_memory = {split: "in-memory" for split in demo.SPLITS}
    overrides = demo.overrides_for(system, scale, in_memory, args.seed)
    overrides += ["model.pretrained=none", f"train.precision={args.precision}", "model.dropout=0.0"]
    picked = {"model.backbone": args.backbone, "model.features_from": args.features_from,
              "model.ms_tap": args.features_from, "data.crop_size": args.crop,
              "model.input_size": args.crop, "data.num_frames": args.frames,
              "data.batch_size": args.batch_size, "model.convlstm_hidden": args.hidden}
    overrides += [f"{key}={value}" for key, value in picked.items() if value is not None]
    return load_experiment(demo.CONFIG, overrides)


def random_batch(cfg, seed: int) -> dict:
    """A loader batch of the experiment's shape (random pixels and labels)."""
    from fpar.data.batch import random_batch as loader_batch

    return loader_batch(cfg.data.batch_size, cfg.data.num_frames, cfg.data.crop_size,
                        dict(cfg.model.num_classes), seed)


def run(args: argparse.Namespace) -> dict:
    """Times both loops for both systems and returns the medians and ratios."""
    from launcher.benchmarks.output import stdout_to_stderr

    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("fpar bench train: --steps must be >= 1 and --warmup >= 0")
    with stdout_to_stderr():
        return _measure(args)


def _measure(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from fpar.engine import distributed
    from launcher.benchmarks.stats import median
    from launcher.benchmarks.train_steps import deepspeed_stepper, plain_stepper

    layout = distributed.read_env()
    device = distributed.init_process_group(layout)
    steppers, configs = {}, {}
    try:
        for system in SYSTEMS:
            cfg = configs[system] = experiment(args, system)
            batch = random_batch(cfg, args.seed)
            steppers[(system, "deepspeed")] = deepspeed_stepper(cfg, batch, device)
            steppers[(system, "plain")] = plain_stepper(cfg, batch, device)
        times = {key: [] for key in steppers}
        for i in tqdm(range(args.warmup + args.steps), desc="steps", unit="round"):
            for key, step in steppers.items():
                began = time.perf_counter()
                step()
                if i >= args.warmup:
                    times[key].append(time.perf_counter() - began)
    finally:
        for step in steppers.values():
            getattr(step, "release", lambda: None)()
        distributed.teardown()
    step_s = {system: {loop: median(times[(system, loop)]) for loop in LOOPS} for system in SYSTEMS}
    overhead = {system: step_s[system]["deepspeed"] / step_s[system]["plain"] for system in SYSTEMS}
    cfg = configs["sparnet"]
    return {
        "benchmark": "train",
        "settings": {"scale": args.scale, "backbone": cfg.model.backbone,
                     "features_from": cfg.model.features_from, "crop": cfg.data.crop_size,
                     "frames": cfg.data.num_frames, "batch_size": cfg.data.batch_size,
                     "convlstm_hidden": cfg.model.convlstm_hidden,
                     "precision": cfg.train.precision, "device": str(device),
                     "steps": args.steps, "warmup": args.warmup},
        "step_s": step_s,
        "clips_per_s": {system: {loop: cfg.data.batch_size / step_s[system][loop] for loop in LOOPS}
                        for system in SYSTEMS},
        "engine_overhead": overhead,
        "engine_overhead_goal": {"goal": GOAL_ENGINE_OVERHEAD,
                                 "met": max(overhead.values()) <= GOAL_ENGINE_OVERHEAD},
        "ms_head_cost": {loop: step_s["sparnet"][loop] / step_s["baseline"][loop] - 1.0
                         for loop in LOOPS},
        "ms_head_cost_paper": 0.078,
    }
