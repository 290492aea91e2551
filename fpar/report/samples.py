"""Running a trained model on a few evaluation clips for the report's overlays.

The model is rebuilt from the run's config and loaded with a checkpoint's weights on the
CPU (no DeepSpeed, no process group). Clips come from a split's shards in evaluation
order (centre crops, no randomness): the first ``count`` decodable ones.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from fpar.data.batch import prepare_batch
from fpar.experiment import ExperimentConfig
from fpar.run_layout import BEST, checkpoints_dir

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ClipSample:
    """One clip as the model saw it, with what the model made of it.

    Attributes:
        split: The run's name of the split.
        segment_id: The segment.
        frames: (T, S, S, 3) uint8 RGB, the normalised model input turned back to pixels.
        labels: True class per label key (-1 = none).
        preds: Top-1 class per head.
        attention: (T, s, s) spatial attention, or None for models without it.
        fraction: (T, h, w) stored moving fraction in [0, 1], cropped like the frames.
        ms_target: (T, s, s) what the MS head was trained towards (binary for the
            classification head), or None without an MS head.
        ms_pred: (T, s, s) the MS head's "moving" probability / fraction, or None.
    """

    split: str
    segment_id: str
    frames: np.ndarray
    labels: dict[str, int]
    preds: dict[str, int]
    attention: np.ndarray | None = None
    fraction: np.ndarray | None = None
    ms_target: np.ndarray | None = None
    ms_pred: np.ndarray | None = None


def checkpoint_for_report(run_dir: Path, cfg: ExperimentConfig) -> Path | None:
    """The checkpoint whose weights scored the run: ``best`` when the config evaluated
    with it and one exists, else the latest complete one; None when there is none."""
    from fpar.engine import checkpoint as ckpt

    root = checkpoints_dir(run_dir)
    if cfg.eval.final_checkpoint == "best":
        tag = ckpt.read_pointer(root / BEST)
        if tag and ckpt.is_complete(root / tag):
            return root / tag
    tag = ckpt.latest_tag(root)
    return None if tag is None else root / tag


def load_model(cfg: ExperimentConfig, tag_dir: Path, trust: bool = False) -> torch.nn.Module:
    """The run's model with the checkpoint's weights, in eval mode on the CPU.

    ImageNet weights are not looked up (``pretrained: none``): the checkpoint replaces
    every weight anyway, and the original file may not exist on this machine.
    """
    from fpar.models import build_model
    from fpar.engine.checkpoint_files import load_weights

    model_cfg = dataclasses.replace(cfg.model, pretrained="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = build_model(model_cfg)
    model.load_state_dict(load_weights(tag_dir, trust))
    return model.eval()


def _ms_maps(cfg: ExperimentConfig, ms: torch.Tensor, motion: torch.Tensor | None):
    """(target, prediction) of the MS head for one clip's output ``ms`` (T, ...)."""
    from fpar.models import ms_target

    if ms.dim() == 4:  # classification logits (T, 2, s, s): P(moving)
        pred = torch.softmax(ms.float(), dim=1)[:, 1]
        kind = "classification"
    else:  # regression (T, s, s): the moving fraction itself
        pred = ms.float()
        kind = "regression"
    target = None
    if motion is not None:
        target = ms_target(motion[None], pred.shape[-1], cfg.model.ms_tau, kind)[0].float().numpy()
    return target, pred.numpy()


@torch.no_grad()
def sample_clips(model: torch.nn.Module, cfg: ExperimentConfig, shard_dir: str | Path,
                 split: str, count: int) -> list[ClipSample]:
    """Runs ``model`` on the first ``count`` clips of a split's shards.

    Args:
        model: The trained model (eval mode).
        cfg: The run's experiment (data settings of evaluation).
        shard_dir: The split's shard folder.
        split: The run's name of the split (kept on each sample).
        count: Clips wanted (fewer when the split is smaller).

    Returns:
        The samples, in evaluation order.
    """
    from fpar.data import ShardStream

    if count < 1:
        return []
    data = dataclasses.replace(cfg.data, workers=0,
                               eval_batch_size=min(count, cfg.data.eval_batch_size))
    stream = ShardStream(data, shard_dir, train=False, rank=0, world_size=1, seed=cfg.seed)
    samples: list[ClipSample] = []
    for loaded in stream.eval_batches():
        batch = prepare_batch(loaded, torch.device("cpu"))
        output = model(batch)
        for i, segment in enumerate(batch["segment_id"]):
            motion = batch["motion"][i] if "motion" in batch else None
            sample = ClipSample(
                split=split, segment_id=str(segment), frames=loaded["frames"][i].numpy(),
                labels={k: int(batch[k][i]) for k in data.label_keys if k in batch},
                preds={k: int(v[i].argmax()) for k, v in output.logits.items()},
                fraction=None if motion is None else motion.float().numpy())
            if output.attention is not None:
                sample.attention = output.attention[i].float().numpy()
            if output.ms is not None:
                sample.ms_target, sample.ms_pred = _ms_maps(cfg, output.ms[i], motion)
            samples.append(sample)
            if len(samples) == count:
                return samples
    return samples
