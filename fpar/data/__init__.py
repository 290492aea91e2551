"""Streaming WebDataset shards into training and evaluation batches.

Public API: :class:`DataConfig`, :class:`ShardStream` (``steps_per_epoch``,
``epoch_batches``, ``eval_batches``, ``epoch_report``), :func:`clip_throughput` and
:class:`DataShortfallError`.
"""

from fpar.data.accounting import DataShortfallError
from fpar.data.config import DataConfig
from fpar.data.stream import ShardStream, clip_throughput

__all__ = ["DataConfig", "DataShortfallError", "ShardStream", "clip_throughput"]
