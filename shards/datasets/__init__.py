"""The datasets fpar knows: one module per family registers its datasets (``registry.py``).

- ``epic.py``: EPIC-KITCHENS-55 (``epic55``) and EPIC-KITCHENS-100 (``epic100``);
- ``gtea61.py``: GTEA-61 (``gtea61``), frame folders, fixed split and leave-one-subject-out;
- ``egtea.py``: EGTEA Gaze+ (``egtea``), its three train/test splits.

A new dataset is one module: a reader of its files (see ``shards.annotations``) and a
``register_dataset(Dataset(...))``; import it before fpar reads a config that names it.
"""

from shards.datasets.registry import (
    Dataset,
    SplitProtocol,
    UnknownDataset,
    dataset_names,
    get_dataset,
    native_release_fps,
    register_dataset,
    unregister_dataset,
)

# The built-in families register themselves on import, in the order of the choices.
from shards.datasets import epic, gtea61, egtea  # noqa: E402,F401,I001

__all__ = [
    "Dataset",
    "SplitProtocol",
    "UnknownDataset",
    "dataset_names",
    "get_dataset",
    "native_release_fps",
    "register_dataset",
    "unregister_dataset",
]
