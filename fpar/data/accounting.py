"""Counting one pass of a rank against its manifest share, and filling batches around gaps."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from fpar.data.assemble import OK, UNDECODABLE, BatchParts, fill_rows

log = logging.getLogger(__name__)

MAX_PROBLEMS = 20


class DataShortfallError(RuntimeError):
    """More samples missing from the shards than ``max_shortfall`` tolerates."""


@dataclass
class PassReport:
    """What one pass delivered compared with what the manifest promised this rank.

    ``expected`` counts the rank's own positions in this pass (not the repeats that pad
    the last batch, nor positions skipped by a resume); ``seen`` those decoded;
    ``missing`` those the tars did not deliver (the shortfall); ``repeats`` the batch
    slots filled with a repeated sample (end-of-epoch padding and stand-ins for skipped
    samples).
    """

    expected: int
    max_shortfall: float
    seen: int = 0
    skipped_undecodable: int = 0
    missing: int = 0
    repeats: int = 0
    problems: list[str] = field(default_factory=list)

    def _note(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def record(self, item: dict) -> None:
        """Counts one item of the pass; raises once missing samples exceed the tolerance."""
        if item["repeat"]:
            return
        status = item["status"]
        if status == OK:
            self.seen += 1
        elif status == UNDECODABLE:
            self.skipped_undecodable += 1
            self._note(item["problem"])
            log.warning("skipped undecodable sample (%d so far): %s",
                        self.skipped_undecodable, item["problem"])
        else:
            self.missing += 1
            self._note(item["problem"])
            if self.missing > self.max_shortfall * self.expected:
                raise DataShortfallError(
                    f"{self.missing} of {self.expected} expected samples missing from the "
                    f"shards (max_shortfall={self.max_shortfall}): {item['problem']}"
                )

    def finish(self) -> None:
        """Logs a summary warning when anything was missing or skipped."""
        if self.missing or self.skipped_undecodable:
            log.warning(
                "pass delivered %d of %d samples: %d missing from the shards, %d undecodable; "
                "first problems: %s", self.seen, self.expected, self.missing,
                self.skipped_undecodable, "; ".join(self.problems[:3]),
            )

    def as_dict(self) -> dict:
        """The report as plain data (``shortfall`` = samples missing from the shards)."""
        return {
            "expected": self.expected,
            "seen": self.seen,
            "skipped_undecodable": self.skipped_undecodable,
            "shortfall": self.missing,
            "shortfall_fraction": self.missing / self.expected if self.expected else 0.0,
            "repeats": self.repeats,
            "problems": list(self.problems),
        }


def fill_batches(batches: Iterable[BatchParts], rank: int) -> Iterator[BatchParts]:
    """Fills the rows of assembled batches that hold no clip, in order.

    A missing or undecodable slot takes a repeat of a decoded clip of the same batch
    (cycling through them), so a batch's content depends only on its own positions and a
    resumed epoch reproduces it. A batch with no decoded clip at all waits for the next
    batch that has one and borrows its first clip; if none follows, the last decoded clip
    before it is used.

    Raises:
        DataShortfallError: when the whole pass has no decodable clip.
    """
    waiting: list[BatchParts] = []
    last_good: tuple[BatchParts, int] | None = None
    for parts in batches:
        if not parts.good:
            waiting.append(parts)
            continue
        for held in waiting:
            fill_rows(held, parts, parts.good[:1])
            yield held
        waiting = []
        fill_rows(parts, parts, parts.good)
        last_good = (parts, parts.good[-1])
        yield parts
    if waiting:
        if last_good is None:
            first = waiting[0].items[0]
            raise DataShortfallError(
                f"rank {rank}: not one decodable sample in this pass "
                f"(first problem: {first.get('problem')})"
            )
        donor, row = last_good
        for held in waiting:
            fill_rows(held, donor, [row])
            yield held
