"""Training and evaluation entry points; every launcher (local, torchrun, SLURM) ends here.

``run`` trains an experiment in the current process, as one rank of the job described by
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (a lone process sets them
itself). ``evaluate`` scores a split with a trained run's checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

from fpar.config import save_config
from fpar.engine import checkpoint as ckpt
from fpar.engine import deepspeed_setup, distributed, preemption
from fpar.engine.checkpoint_files import load_weights
from fpar.engine.predict import predict_stream
from fpar.engine.run_log import attach_log_file
from fpar.evaluation.classification import top1_metrics
from fpar.evaluation.views import describe_views, views_record
from fpar.experiment import ExperimentConfig
from fpar.run_layout import (
    CONFIG_FILE,
    LOG_FILE,
    SUMMARY_FILE,
    checkpoints_dir,
    ms_path,
    scores_path,
)
from fpar.run_setup import (
    data_streams,
    default_run_dir,
    keep_global_batch,
    model_parts,
    resolve_config,
)
from shards.files import atomic_write_json

log = logging.getLogger("fpar.train")


def run(config: str | Path | ExperimentConfig | None, overrides: Sequence[str] = (),
        run_dir: str | Path | None = None, resume: bool = False,
        trust_checkpoint: bool = False) -> dict[str, Any]:
    """Trains an experiment in this process (one rank) and evaluates its test splits.

    A run folder that already holds a complete checkpoint continues from it (a restart
    after preemption); ``resume=True`` additionally requires one.

    Args:
        config: YAML path, config object, or None to use ``run_dir/config.yaml``.
        overrides: ``a.b=value`` strings.
        run_dir: The run folder (default ``output_dir/name``).
        resume: Require a checkpoint to continue from.
        trust_checkpoint: Read the run's checkpoint with full unpickling (else weights-only).

    Returns:
        Summary: run folder, steps, best score, scores files written.

    Raises:
        ConfigError: Before anything starts, for a config this machine cannot run: a
            shard folder missing or of another dataset, ImageNet weights not to be had, a
            precision the device lacks (see :mod:`fpar.preflight`).
        preemption.Preempted: When stopped by a preemption request (a checkpoint exists).
        fpar.trainer.NonFiniteError: When the loss kept being non-finite.
        fpar.engine.checkpoint_files.CheckpointRefused: A checkpoint file needs a type
            beyond the allow-list (and ``trust_checkpoint`` is not set).
    """
    from fpar.preflight import check_experiment

    cfg = resolve_config(config, overrides, run_dir)
    deepspeed_setup.check_precision(cfg.train.precision, cfg.train.zero_stage)
    check_experiment(cfg)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    layout = distributed.read_env()
    cfg = keep_global_batch(cfg, run_dir, layout.world_size)
    device = distributed.init_process_group(layout)
    handler = trainer = None
    try:
        from fpar.trainer import Trainer

        if layout.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / CONFIG_FILE)
            handler = attach_log_file(run_dir / LOG_FILE)
        distributed.barrier()
        log.info("run %s: %d rank(s) on %s, precision %s, ZeRO %d", run_dir, layout.world_size,
                 device, cfg.train.precision, cfg.train.zero_stage)
        train_data, val_data = data_streams(cfg, layout, device)
        factory, loss_fn = model_parts(cfg)
        trainer = Trainer(cfg, run_dir, factory, loss_fn, train_data, val_data, layout, device,
                          trust_checkpoint=trust_checkpoint)
        summary = trainer.fit(resume_required=resume)
        if cfg.eval.final_checkpoint == "best":
            trainer.use_best_weights()
        summary["scores"] = {}
        train_ms = _train_ms_tally(cfg, layout) if cfg.test_splits() else None
        for split, folder in cfg.test_splits().items():
            path = _score_split(trainer, cfg, layout, split, folder, scores_path(run_dir, split),
                                train_ms)
            summary["scores"][split] = str(path)
        summary["run_dir"] = str(run_dir)
        if layout.is_main:
            summary["metrics"] = _official_metrics(run_dir) if summary["scores"] else {}
            atomic_write_json(run_dir / SUMMARY_FILE, summary)
        return summary
    finally:
        if trainer is not None:  # also when preempted or failed: teardown frees its group
            trainer.close()
        if handler is not None:
            logging.getLogger("fpar").removeHandler(handler)
            handler.close()
        distributed.teardown()


def _official_metrics(run_dir: Path) -> dict[str, Any]:
    """Scores the labelled test splits into ``metrics.json``; a failure only warns."""
    from fpar.evaluation import EvaluationError
    from fpar.evaluation.run_metrics import score_run

    try:
        return score_run(run_dir)["splits"]
    except (EvaluationError, OSError, ValueError) as err:
        log.warning("official metrics not computed: %s", err)
        return {}


def _train_ms_tally(cfg: ExperimentConfig, layout):
    """The training split's per-cell motion targets (the MS score's trivial predictors), or
    None when its shards are not here."""
    from fpar.evaluation.ms_score import targets_tally

    if not cfg.data.train_shards or not Path(cfg.data.train_shards).is_dir():
        log.warning("no training shards at %s: the MS score is not computed",
                    cfg.data.train_shards)
        return None
    return targets_tally(cfg, cfg.data.train_shards, layout.rank, layout.world_size)


def _write_ms(layout, out: Path, split: str, test_ms, train_ms) -> None:
    """Writes the MS tallies and score beside a scores file (rank 0) and logs the score."""
    from fpar.evaluation.ms_score import headline, write_ms_file

    if train_ms is None or not layout.is_main:
        return
    scores = write_ms_file(ms_path(out, split), test_ms, train_ms)
    log.info("%s: %s", split, headline(scores))


def _score_split(trainer, cfg: ExperimentConfig, layout, split: str, folder: str,
                 out: Path, train_ms=None) -> Path:
    from fpar.data import ShardStream
    from fpar.evaluation.ms_score import new_tally
    from fpar.evaluation.scores import save_scores

    stream = ShardStream(cfg.data, folder, train=False, rank=layout.rank,
                         world_size=layout.world_size, seed=cfg.seed,
                         pin_memory=trainer.device.type == "cuda")
    test_ms = new_tally(cfg.model)
    ids, logits, labels = trainer.predict(stream, cfg.eval.views(), cfg.eval.aggregate,
                                          progress=layout.is_main, ms_tally=test_ms)
    if layout.is_main:
        save_scores(out, ids, logits, views=views_record(cfg.eval))
        log.info("%s: %d segments scored -> %s %s", split, len(ids), out,
                 top1_metrics(logits, labels))
        _write_ms(layout, out, split, test_ms, train_ms)
    distributed.barrier()
    return out


def _locate_checkpoint(path: Path) -> tuple[Path, Path]:
    """(run folder, checkpoint tag folder) from a run folder or a checkpoint folder."""
    if (path / ckpt.COMPLETE).is_file():
        return path.parent.parent, path
    root = checkpoints_dir(path)
    tag = ckpt.latest_tag(root)
    if tag is None:
        raise FileNotFoundError(f"{path}: neither a checkpoint nor a run folder with a "
                                "complete checkpoint")
    return path, root / tag


def _split_key(cfg: ExperimentConfig, split: str) -> str:
    """The config key that names a split's shard folder."""
    if split in cfg.eval.test_splits:
        return f"eval.test_splits.{split}"
    return {"train": "data.train_shards", "val": "data.val_shards",
            "validation": "data.val_shards"}.get(split, f"data.{split}_shards")


def evaluate(run_dir_or_checkpoint: str | Path, split: str, out: str | Path | None = None,
             overrides: Sequence[str] = (), trust_checkpoint: bool = False) -> Path:
    """Scores a split with a run's latest (or a given) checkpoint; one row per segment.

    Args:
        run_dir_or_checkpoint: A run folder (its latest complete checkpoint) or a
            checkpoint folder ``run/checkpoints/stepNNNNNNNN``.
        split: ``train``, ``val``, ``test``, a name of ``eval.test_splits``, or a shard folder.
        out: Scores file (default ``run/scores_<split>.pt``); the MS score's tallies go
            beside it (``ms_<split>.json``, :mod:`fpar.evaluation.ms_score`).
        overrides: ``eval.*=value`` settings replacing the run's (``eval.clips=2``).
        trust_checkpoint: Read the checkpoint with full unpickling (else weights-only).

    Returns:
        The scores file (written by rank 0; every rank returns its path).
    """
    from fpar.data import ShardStream
    from fpar.evaluation.ms_score import new_tally
    from fpar.evaluation.scores import save_scores
    from fpar.models import build_model
    from fpar.preflight import check_shard_folder

    run_dir, tag_dir = _locate_checkpoint(Path(run_dir_or_checkpoint))
    cfg = resolve_config(None, overrides, run_dir)
    folder = split if Path(split).is_dir() else cfg.shard_dir(split)
    name = Path(split).name if Path(split).is_dir() else split
    check_shard_folder(cfg, "--split" if Path(split).is_dir() else _split_key(cfg, split), folder)
    out = Path(out) if out is not None else scores_path(run_dir, name)
    layout = distributed.read_env()
    cfg = keep_global_batch(cfg, run_dir, layout.world_size)
    device = distributed.init_process_group(layout)
    try:
        # The checkpoint replaces every weight: no ImageNet file is looked for.
        model = build_model(dataclasses.replace(cfg.model, pretrained="none"))
        model.load_state_dict(load_weights(tag_dir, trust_checkpoint))
        model.to(device).eval()
        stream = ShardStream(cfg.data, folder, train=False, rank=layout.rank,
                             world_size=layout.world_size, seed=cfg.seed,
                             pin_memory=device.type == "cuda")
        test_ms = new_tally(cfg.model)
        ids, logits, labels = predict_stream(model, stream, device, views=cfg.eval.views(),
                                             aggregate=cfg.eval.aggregate,
                                             progress=layout.is_main, ms_tally=test_ms)
        train_ms = _train_ms_tally(cfg, layout)
        if layout.is_main:
            save_scores(out, ids, logits, views=views_record(cfg.eval))
            log.info("%s (%s): %d segments scored with %s from %s -> %s %s", name, folder,
                     len(ids), tag_dir.name, describe_views(views_record(cfg.eval)), out,
                     top1_metrics(logits, labels))
            _write_ms(layout, out, name, test_ms, train_ms)
        return out
    finally:
        distributed.teardown()


__all__ = ["evaluate", "preemption", "run"]
