"""How much of the verb the sampled frames carry: an oracle on the generator's ground truth.

For each planned segment the oracle sees only the frames a model sees (the builder's M
stored frames, then the N test-time picks among them) and, at those frames, the acting
object's true pose: centre, size, in-plane rotation and part openness, either in the kitchen
(camera compensated: the world pose) or on the screen (through the camera's true
world-to-screen map, as an uncompensated motion estimate would see it). A multinomial
logistic regression on the trajectory relative to the first picked frame then classifies
the verb. High accuracy on held-out kitchens says the verb is in the frames; a clearly
lower one on screen motion says the camera is no shortcut.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from shards.decode import sample_frames
from shards.synth.plan import DatasetPlan, Options, make_plan
from shards.synth.render import VideoRenderer

POSE_FIELDS = ("x", "y", "log size", "angle", "openness")


def picked_frames(start_frame: int, stop_frame: int, stored: int, num_frames: int) -> list[int]:
    """0-based native frames of the N test-time picks among the M stored of a segment
    (the chunk centres of ``fpar.data.sampling.temporal_indices``)."""
    kept = [f - 1 for f in sample_frames(start_frame, stop_frame, stored)]
    return [kept[min(stored - 1, int((i + 0.5) * stored / num_frames))] for i in range(num_frames)]


def track_poses(renderer: VideoRenderer, track, frames: list[int], screen: bool) -> np.ndarray:
    """(N, 5) poses of ``track`` at ``frames``: world (kitchen) or screen coordinates."""
    rows = []
    for t in frames:
        p = track.pose(t)
        x, y, size, angle = p.x, p.y, p.size, p.angle
        if screen:
            m = renderer.camera.matrices[t]
            x, y = m @ np.array([x, y, 1.0])
            scale = float(np.hypot(m[0, 0], m[1, 0]))
            size *= scale
            angle += float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        rows.append((x, y, size, angle, p.openness))
    return np.array(rows, np.float64)


def trajectory_features(poses: np.ndarray) -> np.ndarray:
    """Pose changes relative to the first frame (in object sizes, log size, 90-degree units,
    openness), their step sizes and their absolute net changes."""
    size0 = poses[0, 2]
    rel = np.stack([(poses[:, 0] - poses[0, 0]) / size0, (poses[:, 1] - poses[0, 1]) / size0,
                    np.log(poses[:, 2] / size0), (poses[:, 3] - poses[0, 3]) / 90.0,
                    poses[:, 4] - poses[0, 4]], axis=1)[1:]
    steps = np.abs(np.diff(np.vstack([np.zeros((1, 5)), rel]), axis=0))
    return np.concatenate([rel.ravel(), steps.ravel(), np.abs(rel[-1]), steps.sum(0)])


def segment_table(plan: DatasetPlan, stored: int = 14, num_frames: int = 7,
                  splits: tuple[str, ...] = ("train", "s1", "s2")) -> dict[str, dict]:
    """Per split: oracle features (world and screen) and verbs of every planned segment."""
    opts = plan.options
    table = {s: {"world": [], "screen": [], "verb": []} for s in splits}
    for video in plan.videos:
        if video.split not in table:
            continue
        renderer = VideoRenderer(video, plan.seed, opts.width, opts.height, video.fps, opts)
        for seg, track in zip(video.segments, renderer.tracks):
            frames = picked_frames(seg.start_frame, seg.stop_frame, stored, num_frames)
            rows = table[video.split]
            for space in ("world", "screen"):
                poses = track_poses(renderer, track, frames, screen=space == "screen")
                rows[space].append(trajectory_features(poses))
            rows["verb"].append(seg.verb)
    return {s: {k: np.array(v) for k, v in rows.items()} for s, rows in table.items()}


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-3,
                 steps: int = 300):
    """A multinomial logistic regression (standardised inputs, L-BFGS); returns predict(x)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mean) / std, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(z: np.ndarray) -> np.ndarray:
        zt = torch.tensor((z - mean) / std, dtype=torch.float64)
        return (zt @ w + b).argmax(1).numpy()

    return predict


def oracle_accuracy(plan: DatasetPlan, stored: int = 14, num_frames: int = 7) -> dict:
    """Verb top-1 of the oracle trained on ``train`` and tested on s1/s2, per space."""
    table = segment_table(plan, stored, num_frames)
    classes = int(max(int(rows["verb"].max()) for rows in table.values() if len(rows["verb"])) + 1)
    result = {}
    for space in ("world", "screen"):
        predict = fit_logistic(table["train"][space], table["train"]["verb"], classes)
        result[space] = {split: float((predict(table[split][space]) == table[split]["verb"]).mean())
                         for split in ("train", "s1", "s2") if len(table[split]["verb"])}
    result["majority"] = majority_rates(plan)["verb"]
    return result


def single_frame_choice(plan: DatasetPlan, stored: int = 14, num_frames: int = 7,
                        splits: tuple[str, ...] = ("s1", "s2")) -> dict[str, float]:
    """How often one frame tells which object moves, among the acting object and its static
    look-alikes: at the middle test-time pick of every segment of ``splits``, in each of the
    full-height square crops training takes (left, centre, right: ``data.scales: [1.0]``).

    ``centre``: the object nearest the crop's centre (the camera follows the acting object,
    so in the centre crop this rule is always right). ``hands``: the object nearest a hand
    in the crop (the grip of the hand that handles the object, or a resting hand), else the
    centre rule; the same as ``centre`` without hands. ``hand_in_view``: share of those crops
    with a hand in them. An acting object outside the crop counts as missed by both.
    """
    opts = plan.options
    side = min(opts.width, opts.height)
    lefts = (0.0, (opts.width - side) / 2, float(opts.width - side))
    hits = {"centre": 0, "hands": 0, "hand_in_view": 0}
    total = 0
    for video in plan.videos:
        if video.split not in splits:
            continue
        renderer = VideoRenderer(video, plan.seed, opts.width, opts.height, video.fps, opts)
        for seg, track in zip(video.segments, renderer.tracks):
            t = picked_frames(seg.start_frame, seg.stop_frame, stored, num_frames)[num_frames // 2]
            m = renderer.camera.matrices[t]
            poses = [track.pose(t)] + [pose for _, pose in track.distractors]
            centres = np.array([m @ np.array([p.x, p.y, 1.0]) for p in poses])
            hands = [h for h in renderer.hand_points(t) if h is not None]
            for left in lefts:
                def inside(p: np.ndarray) -> bool:
                    return left <= p[0] < left + side and 0 <= p[1] < side
                shown = np.array([inside(c) for c in centres])
                total += 1
                if not shown[0]:
                    continue
                centre = np.array([left + side / 2, side / 2])
                gap = np.where(shown, np.hypot(*(centres - centre).T), np.inf)
                by_centre = int(np.argmin(gap))
                in_crop = [h for h in hands if inside(h)]
                by_hand = by_centre
                if in_crop:
                    near = np.min([np.hypot(*(centres - h).T) for h in in_crop], axis=0)
                    by_hand = int(np.argmin(np.where(shown, near, np.inf)))
                hits["centre"] += by_centre == 0
                hits["hands"] += by_hand == 0
                hits["hand_in_view"] += bool(in_crop)
    return {k: v / max(total, 1) for k, v in hits.items()}


def majority_rates(plan: DatasetPlan) -> dict[str, dict[str, float]]:
    """Per task (verb, noun) and test split (s1, s2): top-1 of always answering the most
    frequent training class."""
    labels: dict[str, dict[str, list[int]]] = {}
    for video in plan.videos:
        rows = labels.setdefault(video.split, {"verb": [], "noun": []})
        for seg in video.segments:
            rows["verb"].append(seg.verb)
            rows["noun"].append(seg.noun)
    rates: dict[str, dict[str, float]] = {}
    for task in ("verb", "noun"):
        majority = np.bincount(labels["train"][task]).argmax()
        rates[task] = {split: float(np.mean(np.array(labels[split][task]) == majority))
                       for split in ("s1", "s2") if labels.get(split, {}).get(task)}
    return rates


def plan_of(folder: str | Path) -> DatasetPlan:
    """The plan a generated folder was made from (its ``synth.json``), made again."""
    meta = json.loads((Path(folder) / "synth.json").read_text())
    opts = dict(meta["options"])
    if isinstance(opts.get("fps"), list):
        opts["fps"] = tuple(opts["fps"])
    opts.setdefault("hands", 0)  # written before the kitchens had hands
    return make_plan(meta["format"], len(meta["participants"]), meta["segments"], meta["seed"],
                     Options(**{k: v for k, v in opts.items() if k in Options.__dataclass_fields__}))
