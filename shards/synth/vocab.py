"""The synthetic kitchens' vocabulary: verbs (how an object moves), nouns (what it looks like).

Class ids of the used verbs and nouns are 0..K-1 in every format; the rest of each dataset's
class table is filled with placeholder names so the tables have the real sizes.
"""

from __future__ import annotations

VERBS: tuple[str, ...] = (
    "take", "put", "open", "close", "shake", "stir", "move-left", "move-right", "turn",
)
"""Verbs in class-id order; motions are defined in :mod:`shards.synth.motions`."""

NOUNS: tuple[str, ...] = (
    "pan", "bottle", "jar", "drawer", "kettle", "fridge", "box",
    "cup", "knife", "plate", "bowl", "spoon", "tomato", "sponge",
)
"""Nouns in class-id order; shapes are defined in :mod:`shards.synth.objects`."""

LIDDED_NOUNS: frozenset[str] = frozenset(
    {"pan", "bottle", "jar", "drawer", "kettle", "fridge", "box"}
)
"""Nouns with a part (lid, cap, door, drawer) that open/close can move."""

PART_VERBS: frozenset[str] = frozenset({"open", "close"})

HELD_NOUNS: frozenset[str] = frozenset({"bottle", "jar", "kettle", "box"})
"""Lidded nouns small enough to be held by one hand while the other opens or closes them:
for open/close the whole object sways and is in the motion mask; on pans, drawers and
fridges only the part moves."""

def compatible(verb: int, noun: int) -> bool:
    """Whether ``verb`` can be performed on ``noun`` (open/close need a movable part)."""
    return VERBS[verb] not in PART_VERBS or NOUNS[noun] in LIDDED_NOUNS


def action_combos() -> list[tuple[int, int]]:
    """Every compatible (verb, noun) pair in a fixed order that covers all verbs and nouns early.

    Round ``r`` pairs each noun ``n`` with verb ``(n + r) % V``, or with the next verb it
    accepts and has not had yet, so any prefix of two rounds spans the whole vocabulary;
    single-label datasets (GTEA-61, EGTEA) take a prefix.
    """
    used: dict[int, set[int]] = {n: set() for n in range(len(NOUNS))}
    combos: list[tuple[int, int]] = []
    for shift in range(len(VERBS)):
        for noun in range(len(NOUNS)):
            for step in range(len(VERBS)):
                verb = (noun + shift + step) % len(VERBS)
                if compatible(verb, noun) and verb not in used[noun]:
                    used[noun].add(verb)
                    combos.append((verb, noun))
                    break
    return combos


def names_with_placeholders(used: tuple[str, ...], total: int, prefix: str) -> list[str]:
    """``used`` names followed by ``prefix-<id>`` placeholders up to ``total`` entries."""
    if len(used) > total:
        raise ValueError(f"{len(used)} {prefix} names do not fit a table of {total}")
    return list(used) + [f"{prefix}-{i:03d}" for i in range(len(used), total)]
