"""Test-time views: the K temporal positions x C crops a segment is scored from.

A view is one N-frame clip of a segment: which of K evenly spread positions inside each
of the N chunks its frames take (K = 1: the chunk centres), and which crop of the frame.
The crop sets follow the protocols published EPIC-KITCHENS numbers are scored with:

* 1: the centre crop of ``data.test_crop_fraction`` of the short side (Ego-RNN, SparNet).
* 3: left, centre and right squares of the full short side along the long side (top,
  centre, bottom on a portrait frame): PySlowFast's three-crop test
  (``TEST.NUM_SPATIAL_CROPS: 3``), as in Motionformer and MMAction2's ``ThreeCrop``.
* 5: the four corners and the centre, ``test_crop_fraction`` of the short side.
* 10: those five and their mirror images: TSN's over-sampling (``GroupOverSample``), the
  EPIC-KITCHENS-55 baselines' 10 crops. A mirrored view's scores are mapped back through
  the dataset's mirror pairs before averaging (:mod:`fpar.evaluation.views`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fpar.data.transforms import CropBox

#: Crops per temporal position that a view set may have.
CROP_COUNTS = (1, 3, 5, 10)

_SIDES = {1: ("c",), 3: ("first", "middle", "last"), 5: ("tl", "tr", "bl", "br", "c")}


@dataclass(frozen=True)
class View:
    """One test-time view of a segment.

    Attributes:
        clip: Temporal position in ``[0, clips)``.
        clips: K, temporal positions per chunk.
        crop: ``c`` (centre), ``tl``/``tr``/``bl``/``br`` (corners), or the three-crop
            squares ``first``/``middle``/``last`` along the long side.
        flip: Whether the crop is mirrored.
    """

    clip: int = 0
    clips: int = 1
    crop: str = "c"
    flip: bool = False


def view_set(clips: int, crops: int) -> tuple[View, ...]:
    """The K x C views of a segment, temporal position major; the first is never mirrored.

    Raises:
        ValueError: For K < 1 or a crop count not in :data:`CROP_COUNTS`.
    """
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {crops}")
    sides = _SIDES[5 if crops == 10 else crops]
    flips = (False, True) if crops == 10 else (False,)
    return tuple(View(k, clips, side, flip) for k in range(clips) for flip in flips
                 for side in sides)


def single_view(views) -> bool:
    """Whether ``views`` is the default single view (or none): the chunk centres and the
    centre crop, read and scored as without views."""
    return tuple(views) in ((), (View(),))


def side_fraction(view: View, fraction: float) -> float:
    """The side of ``view``'s crop as a fraction of the short side."""
    return 1.0 if view.crop in _SIDES[3] else fraction


def view_box(view: View, width: int, height: int, fraction: float) -> CropBox:
    """The crop of ``view`` on a ``width`` x ``height`` stored frame.

    Args:
        view: The view.
        width: Stored frame width in pixels.
        height: Stored frame height in pixels.
        fraction: ``data.test_crop_fraction``: the side of the centre and corner crops as
            a fraction of the short side (three-crop squares take the whole short side).
    """
    if view.crop in _SIDES[3]:
        side = min(width, height)
        slack_x, slack_y = width - side, height - side
        step = {"first": 0, "middle": 1, "last": 2}[view.crop]
        # The middle square's offset rounds down, as the single centre crop's does.
        x0, y0 = slack_x * step // 2, slack_y * step // 2
    else:
        side = int(round(min(width, height) * fraction))
        slack_x, slack_y = width - side, height - side
        if view.crop == "c":
            x0, y0 = slack_x // 2, slack_y // 2
        else:
            x0 = 0 if view.crop[1] == "l" else slack_x
            y0 = 0 if view.crop[0] == "t" else slack_y
    return CropBox(x0 / width, y0 / height, side / width, side / height, view.flip)
