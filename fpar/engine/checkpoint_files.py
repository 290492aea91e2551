"""Reading checkpoint files as data: weights-only unpickling with an allow-list.

A ``.pt`` file is a pickle, and unpickling runs whatever callable the pickle names. Every
checkpoint file fpar reads (DeepSpeed's model and optimiser states, fpar's RNG states) is
read by torch's weights-only unpickler, which builds tensors, containers, numbers and
strings and, beyond those, exactly the classes of :data:`DEEPSPEED_TYPES`: what DeepSpeed
0.19 writes for fp32, bf16 and fp16 (static or dynamic loss scaler) at ZeRO 0-3. A file
needing anything else is refused before any of the checkpoint is used, with the file,
the type it wanted and ``--trust-checkpoint``, the user's opt-in for a checkpoint they made
or trust (fpar's RNG files written before this format hold numpy objects and need it).

DeepSpeed's own ``load_checkpoint`` and ``zero_to_fp32`` call ``torch.load`` with
``weights_only=False``: :func:`check_files` reads every file first, and
:func:`weights_only_loads` forces DeepSpeed's loads through the same unpickler.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from fpar.commands import TRUST_CHECKPOINT

log = logging.getLogger(__name__)

_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_FORCE_NOT = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


class CheckpointRefused(ValueError):
    """A checkpoint file that cannot be read as data (or not at all)."""


#: The classes beyond tensors and containers that DeepSpeed 0.19 writes into checkpoints.
#: ZeRO 1-3 optimiser states hold the loss scaler object (``LossScaler`` for fp32, bf16 and
#: static fp16; ``DynamicLossScaler`` for dynamic fp16, its ``dtype`` a torch dtype) and the
#: stage as ``ZeroStageEnum``; ZeRO 1-2 param slice mappings hold ``fragment_address``.
#: ZeRO 0 (fp32, bf16, fp16: loss scale as numbers) writes only plain values and tensors.
DEEPSPEED_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


def allowed_globals() -> list[Any]:
    """The classes of :data:`DEEPSPEED_TYPES` (importing DeepSpeed)."""
    out = []
    for name in DEEPSPEED_TYPES:
        module, _, attr = name.rpartition(".")
        out.append(getattr(importlib.import_module(module), attr))
    return out


def _load_weights_only(path: str | Path) -> Any:
    # Importing DeepSpeed prints to stdout and takes seconds: a process that has not done
    # so (fpar report, a comparison) does it only for a file that names one of its types.
    imported = "deepspeed" in sys.modules
    try:
        with torch.serialization.safe_globals(allowed_globals() if imported else []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if imported or _wanted(err) not in DEEPSPEED_TYPES:
            raise
    with torch.serialization.safe_globals(allowed_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def _wanted(err: Exception) -> str | None:
    """The type the weights-only unpickler refused, from its message (None if no type)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err)) or re.search(r"but got (<class '[^']+'>)", str(err))
    return found.group(1) if found else None


def _detail(err: Exception) -> str:
    """The unpickler's own words, without torch's advice around them."""
    text = str(err).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith(("Weights only load failed", "Check the "))]
    return lines[0][:200] if lines else type(err).__name__


def refusal(path: str | Path, err: Exception) -> CheckpointRefused:
    """The error for a checkpoint file the weights-only unpickler would not read."""
    wanted = _wanted(err)
    if wanted is None:
        return CheckpointRefused(
            f"{path}: refused: not readable as checkpoint data ({_detail(err)}). If you made "
            f"this checkpoint or trust whoever did, {TRUST_CHECKPOINT} reads it with full "
            "unpickling")
    return CheckpointRefused(
        f"{path}: refused: reading it needs {wanted}, which is none of the types fpar and "
        "DeepSpeed write into checkpoints, and unpickling it could run code the file carries. "
        f"If you made this checkpoint or trust whoever did, run again with {TRUST_CHECKPOINT} "
        "(checkpoints of older fpar versions need it for their RNG files)")


def load_file(path: str | Path, trust: bool = False) -> Any:
    """Reads one checkpoint file onto the CPU: weights-only unless ``trust``.

    Raises:
        CheckpointRefused: The file needs a type beyond the allow-list (naming it), or is
            no readable ``torch.save`` file.
    """
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        return _load_weights_only(path)
    except pickle.UnpicklingError as err:
        if trust:
            raise CheckpointRefused(f"{path}: not a readable checkpoint file ({err})") from None
        raise refusal(path, err) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as err:
        raise CheckpointRefused(f"{path}: not a readable checkpoint file "
                                f"({type(err).__name__}: {str(err)[:300]})") from None


def checkpoint_files(tag_dir: str | Path) -> list[Path]:
    """Every pickled file of a checkpoint folder (DeepSpeed's and fpar's ``.pt``), sorted."""
    return sorted(p for p in Path(tag_dir).rglob("*.pt") if p.is_file())


_RANK_OF_FILE = re.compile(r"(?:zero_pp_rank_|rng_rank)(\d+)")


def files_of_rank(files: Iterable[Path], rank: int, world_size: int) -> list[Path]:
    """The files ``rank`` checks: shared ones, and those of ranks ``k`` with k % W == rank.

    So every file is checked by some rank, and a rank reads its own share, not all.
    """
    mine = []
    for path in files:
        found = _RANK_OF_FILE.search(path.name)
        if found is None or int(found.group(1)) % world_size == rank:
            mine.append(path)
    return mine


def check_files(files: Iterable[Path], trust: bool = False) -> None:
    """Reads every file weights-only (and drops it), so none is used before all pass.

    Raises:
        CheckpointRefused: For the first file that is refused or unreadable.
    """
    if trust:
        return
    for path in files:
        load_file(path)


@contextlib.contextmanager
def weights_only_loads(trust: bool = False) -> Iterator[None]:
    """Makes every ``torch.load`` inside weights-only with the allow-list (DeepSpeed's too).

    Raises:
        CheckpointRefused: When such a load is refused (a file changed after its check).
    """
    if trust:
        yield
        return
    saved = {name: os.environ.pop(name, None) for name in (_FORCE, _FORCE_NOT)}
    os.environ[_FORCE] = "1"
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            yield
    except pickle.UnpicklingError as err:
        raise refusal("a checkpoint file", err) from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_weights(tag_dir: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """The model weights (fp32) stored in a DeepSpeed checkpoint folder.

    ZeRO 0-2 keep the whole module in the model-states file. ZeRO-3 partitions every
    parameter across the ranks' optimiser files, so its weights are gathered from those.
    Every file of the folder is read weights-only first unless ``trust``, so a refused
    one stops before any is used.

    Raises:
        CheckpointRefused: A file needs a type beyond the allow-list, naming it.
    """
    check_files(checkpoint_files(tag_dir), trust)  # all of them, before any is used
    if any(tag_dir.glob("zero_pp_rank_*_mp_rank_*_model_states.pt")):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        with weights_only_loads(trust):
            states = get_fp32_state_dict_from_zero_checkpoint(str(tag_dir.parent), tag=tag_dir.name)
    else:
        files = sorted(tag_dir.glob("mp_rank_*_model_states.pt"))
        if not files:
            raise FileNotFoundError(f"{tag_dir}: no DeepSpeed model states file")
        states = load_file(files[0], trust)["module"]
    return {k: v.float() if v.is_floating_point() else v for k, v in states.items()}
