"""Models: SparNet and the systems it is compared with, behind one interface.

``build_model(cfg)`` returns an ``nn.Module`` whose ``forward(batch)`` gives a
``ModelOutput`` and whose ``param_groups()`` names its parameter groups;
``compute_loss(cfg, output, batch)`` is the training loss.
"""

from fpar.models.config import STAGE_STRIDES, ModelConfig, stage_size
from fpar.models.losses import compute_loss, ms_target
from fpar.models.output import ActionModel, ModelOutput
from fpar.models.registry import build_model, list_models, register_model

# Importing a family registers its models; this order is the listing order.
from fpar.models import sparnet, egornn, flow, two_stream, imprinting  # noqa: E402,F401
from fpar.models import static_dynamic, lsta, tsn  # noqa: E402,F401

__all__ = [
    "ActionModel",
    "ModelConfig",
    "ModelOutput",
    "STAGE_STRIDES",
    "build_model",
    "compute_loss",
    "list_models",
    "ms_target",
    "register_model",
    "stage_size",
]
