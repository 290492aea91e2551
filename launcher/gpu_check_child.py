"""The child processes of ``launcher.gpu_check``, each a fresh process like a real restart.

``python -m launcher.gpu_check_child train RUN_DIR [CONFIG] [KEY=VALUE ...] [--resume]``
    ``fpar.train.run`` with deterministic kernels (cuDNN's deterministic algorithms,
    ``torch.use_deterministic_algorithms`` warning where an op has none), so that a resumed
    run can be compared with an uninterrupted one bit for bit.
``python -m launcher.gpu_check_child restore RUN_DIR OUT_DIR RESULT_JSON``
    What a restarted run does first (:class:`fpar.trainer.Trainer` restoring the newest
    checkpoint, TAG), then saves the restored engine as ``OUT_DIR/TAG`` and records whether
    the fresh model's weights differed from the checkpoint's (else the check proves nothing).
``python -m launcher.gpu_check_child update OUT_JSON CONFIG PRECISIONS BATCH [KEY=VALUE ...]``
    The first optimiser step's relative weight update of each precision (comma-separated)
    on the same synthetic batch (``launcher.benchmarks.gpu_steps.first_update``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def deterministic() -> None:
    """Deterministic kernels where they exist; call before CUDA work starts."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def train(run_dir: str, config: str | None, overrides: list[str], resume: bool) -> dict:
    """Trains (or resumes) the run in this process; returns its summary."""
    deterministic()
    from fpar.train import run

    return run(config, overrides, run_dir=run_dir, resume=resume)


def restore(run_dir: str, out_dir: str) -> dict:
    """Restores the newest checkpoint of ``run_dir`` as a restarted run does; saves it again."""
    import torch

    deterministic()
    from fpar.engine import checkpoint as ckpt
    from fpar.engine import distributed
    from fpar.engine.checkpoint_files import load_weights
    from fpar.run_layout import checkpoints_dir
    from fpar.run_setup import data_streams, model_parts, resolve_config
    from fpar.trainer import Trainer
    from launcher.checkpoint_compare import compare_states

    cfg = resolve_config(None, (), run_dir)
    layout = distributed.read_env()
    device = distributed.init_process_group(layout)
    try:
        train_data, _ = data_streams(cfg, layout, device)
        factory, loss_fn = model_parts(cfg)
        torch.manual_seed(cfg.seed)
        initial = factory().state_dict()
        tag = ckpt.latest_tag(checkpoints_dir(run_dir))
        if tag is None:
            raise RuntimeError(f"{run_dir}: no complete checkpoint to restore")
        saved = load_weights(checkpoints_dir(run_dir) / tag)
        moved = [k for k, v in initial.items()
                 if v.is_floating_point() and not torch.equal(v.float(), saved[k])]
        trainer = Trainer(cfg, run_dir, factory, loss_fn, train_data, None, layout, device)
        trainer._restore()  # the resume path of Trainer.fit: the newest complete tag
        restored = {k: v.float().cpu() if v.is_floating_point() else v.cpu()
                    for k, v in trainer.engine.module.state_dict().items()}
        module_diffs = compare_states(saved, restored)
        trainer.engine.save_checkpoint(out_dir, tag=tag, save_latest=False)
        result = {"tag": tag, "step": trainer.state.step, "dtype": str(trainer.dtype),
                  "tensors_moved_since_init": len(moved), "module_differences": module_diffs[:20]}
        trainer.close()
        return result
    finally:
        distributed.teardown()


def updates(config: str, precisions: list[str], batch: int, overrides: list[str]) -> dict:
    """``first_update`` of each precision, one engine after the other, in this process."""
    deterministic()
    from fpar.engine import distributed
    from launcher.benchmarks.gpu_measure import Variant
    from launcher.benchmarks.gpu_steps import experiment, first_update

    layout = distributed.read_env()
    device = distributed.init_process_group(layout)
    try:
        return {p: first_update(experiment(config, overrides, Variant(p), batch), Variant(p),
                                device) for p in precisions}
    finally:
        distributed.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.gpu_check_child")
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("run_dir")
    t.add_argument("config", nargs="?")
    t.add_argument("overrides", nargs="*")
    t.add_argument("--resume", action="store_true")
    r = sub.add_parser("restore")
    r.add_argument("run_dir")
    r.add_argument("out_dir")
    r.add_argument("result")
    u = sub.add_parser("update")
    u.add_argument("result")
    u.add_argument("config")
    u.add_argument("precisions")
    u.add_argument("batch", type=int)
    u.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.what == "update":
        result = updates(args.config, args.precisions.split(","), args.batch, args.overrides)
        Path(args.result).write_text(json.dumps(result))
        return 0
    if args.what == "train":
        summary = train(args.run_dir, args.config, args.overrides, args.resume)
        print(json.dumps({"step": summary.get("step"),
                          "skipped_steps": summary.get("skipped_steps")}))
        return 0
    result = restore(args.run_dir, args.out_dir)
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
