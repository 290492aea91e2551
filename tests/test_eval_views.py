"""Test-time views: K clips x C crops per segment, averaged as the EPIC baselines score."""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import synthetic_epic55_shards  # noqa: F401  (fixture)
from fpar.data import ShardStream
from fpar.data.reader import tar_samples
from fpar.data.sampling import temporal_indices
from fpar.data.transforms import centre_box, crop_frames
from fpar.data.views import View, view_set, view_box
from fpar.engine.predict import predict, predict_stream
from fpar.evaluation.scores import load_scores, read_views
from fpar.evaluation.views import ViewAverage, describe_views
from fpar.experiment import load_experiment
from fpar.models import build_model
from fpar.models.output import ModelOutput
from fpar.report.assemble import metrics_section
from fpar.report.collect import SplitSource, evaluate_split
from shards.schema import decode_sample
from shards.synth.vocab import VERBS
from test_data_stream import build_shards

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "experiments" / "tiny_cpu.yaml"
MOVE_LEFT, MOVE_RIGHT = VERBS.index("move-left"), VERBS.index("move-right")


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------ which views


def test_view_sets_follow_their_protocols():
    width, height, fraction = 199, 112, 0.875
    one = view_set(1, 1)
    assert one == (View(),) and view_box(one[0], width, height, fraction) == \
        centre_box(width, height, fraction)
    # Three-crop: squares of the whole short side at the start, middle and end of the long side.
    boxes = [view_box(v, width, height, fraction) for v in view_set(1, 3)]
    assert [round(b.x0 * width) for b in boxes] == [0, (width - height) // 2, width - height]
    assert all(b.h == 1.0 and round(b.w * width) == height and not b.flip for b in boxes)
    portrait = [view_box(v, height, width, fraction) for v in view_set(1, 3)]
    assert [round(b.y0 * width) for b in portrait] == [0, (width - height) // 2, width - height]
    # Five: corners and the centre crop; ten: those and their mirror images.
    side = round(height * fraction)
    five = {(round(b.x0 * width), round(b.y0 * height), b.flip)
            for b in (view_box(v, width, height, fraction) for v in view_set(1, 5))}
    assert five == {(0, 0, False), (width - side, 0, False), (0, height - side, False),
                    (width - side, height - side, False),
                    ((width - side) // 2, (height - side) // 2, False)}
    ten = view_set(1, 10)
    assert [v.flip for v in ten] == [False] * 5 + [True] * 5
    assert [dataclasses.replace(v, flip=False) for v in ten[5:]] == list(ten[:5])
    # K clips x C crops, position major, each position's first view upright.
    views = view_set(2, 3)
    assert len(views) == 6 and [v.clip for v in views] == [0, 0, 0, 1, 1, 1]
    for clips, crops in ((0, 1), (1, 2), (1, 4)):
        with pytest.raises(ValueError):
            view_set(clips, crops)


@pytest.mark.parametrize("stored, frames", [(14, 7), (4, 3), (32, 7), (3, 5)])
def test_clips_are_spread_evenly_inside_each_chunk(stored, frames):
    chunk = stored / frames
    centres = temporal_indices(stored, frames, train=False)
    assert centres.tolist() == [min(int(i * chunk + chunk / 2), stored - 1) for i in range(frames)]
    assert temporal_indices(stored, frames, False, clip=0, clips=1).tolist() == centres.tolist()
    for clips in (2, 3, 4):
        picks = [temporal_indices(stored, frames, False, clip=k, clips=clips) for k in range(clips)]
        for k, pick in enumerate(picks):
            expected = [min(int(i * chunk + chunk * (2 * k + 1) / (2 * clips)), stored - 1)
                        for i in range(frames)]
            assert pick.tolist() == expected
        # Later positions never come before earlier ones in a chunk.
        assert all((b >= a).all() for a, b in zip(picks, picks[1:]))
    assert temporal_indices(14, 7, False, clip=0, clips=2).tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert temporal_indices(14, 7, False, clip=1, clips=2).tolist() == [1, 3, 5, 7, 9, 11, 13]


# ------------------------------------------------------------------ averaging


def _view_rows(segments: int, views, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"seg{s}" for s in range(segments) for _ in views]
    logits = {"verb": rng.normal(0, 3, (len(ids), classes)).astype(np.float32),
              "noun": rng.normal(0, 3, (len(ids), 4)).astype(np.float32)}
    labels = {"verb": np.array([[1, 2, 0][s % 3] for s in range(segments) for _ in views])}
    numbers = [n for _ in range(segments) for n in range(len(views))]
    return ids, logits, labels, numbers


def _in_batches(average: ViewAverage, ids, logits, labels, numbers, size: int):
    out_ids, out_scores, out_labels = [], {}, {}
    parts = [average.add(ids[i:i + size], {h: v[i:i + size] for h, v in logits.items()},
                         {k: v[i:i + size] for k, v in labels.items()}, numbers[i:i + size])
             for i in range(0, len(ids), size)] + [average.finish()]
    for part_ids, scores, labs in parts:
        out_ids += part_ids
        for head, value in scores.items():
            out_scores.setdefault(head, []).append(value)
        for key, value in labs.items():
            out_labels.setdefault(key, []).append(value)
    return (out_ids, {h: np.concatenate(v) for h, v in out_scores.items()},
            {k: np.concatenate(v) for k, v in out_labels.items()})


def test_prob_average_is_the_log_of_the_mean_softmax_with_mirrors_mapped_back():
    views = view_set(1, 10)
    pairs = {1: 2, 2: 1}
    mirrored = (lambda key, c: pairs.get(c, c) if key == "verb" else c)
    ids, logits, labels, numbers = _view_rows(3, views, 5)
    # A mirrored view's clip carries the mirrored label, as the stream gives it.
    labels["verb"] = np.array([mirrored("verb", int(c)) if views[n].flip else int(c)
                               for c, n in zip(labels["verb"], numbers)])
    # Batches of 7 views: segments straddle batches.
    got_ids, scores, got_labels = _in_batches(ViewAverage(views, mirrored, "prob"), ids, logits,
                                              labels, numbers, 7)
    assert got_ids == ["seg0", "seg1", "seg2"]
    perm = np.array([0, 2, 1, 3, 4])
    for s in range(3):
        rows = slice(s * 10, s * 10 + 10)
        verb = softmax(logits["verb"][rows].astype(np.float64))
        verb[5:] = verb[5:][:, perm]  # mirrored views: column j scored class mirror(j)
        np.testing.assert_allclose(np.exp(scores["verb"][s]), verb.mean(0), rtol=1e-5)
        noun = softmax(logits["noun"][rows].astype(np.float64)).mean(0)
        np.testing.assert_allclose(np.exp(scores["noun"][s]), noun, rtol=1e-5)
        # The official evaluator's softmax of the stored row is the averaged distribution.
        np.testing.assert_allclose(softmax(scores["verb"][s].astype(np.float64)), verb.mean(0),
                                   rtol=1e-5)
    assert got_labels["verb"].tolist() == [1, 2, 0]  # mirrored views' labels mapped back


def test_logit_average_and_confident_views_stay_finite():
    views = view_set(2, 1)
    ids, logits, labels, numbers = _view_rows(2, views, 6, seed=1)
    _, scores, _ = _in_batches(ViewAverage(views, lambda k, c: c, "logit"), ids, logits, labels,
                               numbers, 3)
    np.testing.assert_allclose(scores["verb"], logits["verb"].reshape(2, 2, 6).mean(1), rtol=1e-6)
    sharp = {"verb": np.array([[0.0, 2000.0], [0.0, 2000.0]], dtype=np.float32),
             "noun": np.zeros((2, 4), dtype=np.float32)}
    _, scores, _ = _in_batches(ViewAverage(views, lambda k, c: c, "prob"), ["a", "a"], sharp,
                               {}, [0, 1], 2)
    assert np.isfinite(scores["verb"]).all() and scores["verb"][0, 0] < -1000
    with pytest.raises(ValueError, match="aggregate"):
        ViewAverage(views, lambda k, c: c, "mean")


def test_segment_missing_views_is_left_out_and_reported(caplog):
    views = view_set(1, 3)
    ids, logits, labels, numbers = _view_rows(3, views, 3)
    keep = [i for i in range(len(ids)) if i != 4]  # seg1 lost its view 1
    take = (lambda x: [x[i] for i in keep])
    with caplog.at_level(logging.WARNING):
        got, _, _ = _in_batches(ViewAverage(views, lambda k, c: c), take(ids),
                                {h: v[keep] for h, v in logits.items()},
                                {k: v[keep] for k, v in labels.items()}, take(numbers), 4)
    assert got == ["seg0", "seg2"] and "seg1" in caplog.text
    with pytest.raises(RuntimeError, match="not consecutive"):
        ViewAverage(views, lambda k, c: c).add(["a", "b", "a"], {}, {}, [0, 0, 1])


def test_views_are_described_for_reports():
    assert describe_views(None) == "views not recorded in the scores file"
    assert describe_views({"clips": 1, "crops": 1, "views": 1, "aggregate": "prob"}).startswith("1 view")
    assert describe_views({"clips": 2, "crops": 3, "views": 6, "aggregate": "prob"}) == \
        "6 views (2 clips x 3 crops, mean of probabilities)"


# ------------------------------------------------------------------ on shards


@pytest.fixture(scope="module")
def toy_shards(tmp_path_factory) -> Path:
    return build_shards(tmp_path_factory.mktemp("views") / "shards", count=9)


def tiny_model():
    torch.manual_seed(0)
    cfg = load_experiment(TINY, ["model.input_size=32"])
    model = build_model(dataclasses.replace(cfg.model, num_classes={"verb": 4, "noun": 3}))
    return model.eval()


def tiny_data(**changes):
    cfg = load_experiment(TINY, ["data.crop_size=32", "data.eval_batch_size=4",
                                 "data.mirror_pairs={verb: [[1, 2]]}"]).data
    return dataclasses.replace(cfg, **changes)


def test_one_view_scores_as_without_views(toy_shards):
    data = tiny_data()
    model = tiny_model()
    stream = ShardStream(data, toy_shards, train=False, rank=0, world_size=1, seed=0)
    batches = list(stream.eval_batches())
    assert all("view" not in b for b in batches)
    one_view = list(stream.eval_batches(view_set(1, 1)))
    for a, b in zip(batches, one_view, strict=True):
        assert a.keys() == b.keys() and torch.equal(a["frames"], b["frames"])
    # Each clip is the chunk centres and the centre crop (no JPEG reduction at this size).
    raws = [r for shard in sorted(toy_shards.glob("*.tar"))
            for r in tar_samples(str(shard), io.BytesIO(shard.read_bytes()))]
    frames = torch.cat([b["frames"] for b in batches]).numpy()
    for raw, clip in zip(raws, frames, strict=True):
        sample = decode_sample(raw, temporal_indices(9, data.num_frames, train=False))
        box = centre_box(40, 32, data.test_crop_fraction)
        assert np.array_equal(clip, crop_frames(sample["frames"], box, data.crop_size))
    plain = predict(model, stream.eval_batches(), torch.device("cpu"))
    views = predict_stream(model, stream, torch.device("cpu"), views=view_set(1, 1))
    assert plain[0] == views[0]
    for head in plain[1]:
        assert np.array_equal(plain[1][head], views[1][head])  # the logits, bit for bit


@pytest.mark.parametrize("clips, crops", [(2, 3), (1, 10)])
def test_views_average_equals_each_view_scored_alone(toy_shards, clips, crops):
    data = tiny_data()
    model = tiny_model()
    stream = ShardStream(data, toy_shards, train=False, rank=0, world_size=1, seed=0)
    views = view_set(clips, crops)
    ids, scores, labels = predict_stream(model, stream, torch.device("cpu"), views=views)
    assert len(ids) == len(set(ids)) == 8
    alone = []
    for view in views:
        with torch.no_grad():
            rows = {}
            for batch in stream.eval_batches((view,)):
                out = model(batch_for_model(batch))
                for head, value in out.logits.items():
                    rows.setdefault(head, []).append(softmax(value.double().numpy()))
        probs = {h: np.concatenate(v) for h, v in rows.items()}
        if view.flip:
            probs["verb"] = probs["verb"][:, [0, 2, 1, 3]]
        alone.append(probs)
    for head in scores:
        mean = np.mean([p[head] for p in alone], axis=0)
        np.testing.assert_allclose(np.exp(scores[head].astype(np.float64)), mean, atol=1e-6)
    assert labels["verb"].tolist() == [i % 4 for i in range(8)]
    # Views are batched: no batch holds more than eval_batch_size clips.
    assert max(len(b["segment_id"]) for b in stream.eval_batches(views)) == 4


def batch_for_model(batch):
    from fpar.data.batch import prepare_batch

    return prepare_batch(batch, torch.device("cpu"))


def test_two_ranks_score_each_segment_once_as_one_rank(toy_shards):
    data = tiny_data()
    model = tiny_model()
    views = view_set(2, 3)
    one = predict_stream(model, ShardStream(data, toy_shards, train=False, rank=0, world_size=1,
                                            seed=0), torch.device("cpu"), views=views)
    parts = [predict_stream(model, ShardStream(data, toy_shards, train=False, rank=r,
                                               world_size=2, seed=0),
                            torch.device("cpu"), views=views) for r in range(2)]
    ids = parts[0][0] + parts[1][0]
    assert ids == one[0] and not set(parts[0][0]) & set(parts[1][0])
    for head in one[1]:
        np.testing.assert_allclose(np.concatenate([p[1][head] for p in parts]), one[1][head],
                                   atol=1e-6)


def test_segment_with_an_undecodable_view_is_not_scored(tmp_path, caplog):
    shards = build_shards(tmp_path / "bad", bad_jpeg="seg3", count=9)
    data = tiny_data()
    stream = ShardStream(data, shards, train=False, rank=0, world_size=1, seed=0)
    with caplog.at_level(logging.WARNING):
        ids, _, _ = predict_stream(tiny_model(), stream, torch.device("cpu"),
                                   views=view_set(1, 3))
    assert "seg3" not in ids and len(ids) == 7
    assert stream.epoch_report()["skipped_undecodable"] == 3  # the report counts views


# ------------------------------------------------------------- synthetic kitchens


def oracle(batch: dict) -> ModelOutput:
    """A model that is right about every clip it is shown: a mirrored move-left clip shows
    a move-right, and it says so."""
    return ModelOutput({"verb": torch.nn.functional.one_hot(batch["verb"], 125).float() * 6,
                        "noun": torch.nn.functional.one_hot(batch["noun"], 352).float() * 6})


def test_mirrored_move_left_view_counts_for_move_left(synthetic_epic55_shards):  # noqa: F811
    cfg = load_experiment(TINY, ["data.crop_size=32"])
    stream = ShardStream(cfg.data, synthetic_epic55_shards / "train", train=False, rank=0,
                         world_size=1, seed=0)
    views = view_set(1, 10)
    seen = {}
    for batch in stream.eval_batches(views):
        for row, number in enumerate(batch["view"].tolist()):
            seen.setdefault(batch["segment_id"][row], {})[number] = (
                int(batch["verb"][row]), batch["frames"][row])
    moving = [s for s, v in seen.items() if v[0][0] in (MOVE_LEFT, MOVE_RIGHT)]
    assert moving  # the kitchens hold move-left/right segments
    for segment in moving:
        upright, mirror = seen[segment][4], seen[segment][9]  # centre crop and its mirror
        assert torch.equal(mirror[1], upright[1].flip(2))
        assert {upright[0], mirror[0]} == {MOVE_LEFT, MOVE_RIGHT}
    ids, scores, labels = predict_stream(oracle, stream, torch.device("cpu"), views=views)
    truth = dict(zip(ids, labels["verb"].tolist()))
    one = softmax(np.eye(125)[0] * 6)[0]
    for i, segment in enumerate(ids):
        probs = np.exp(scores["verb"][i].astype(np.float64))
        assert probs.argmax() == truth[segment] == seen[segment][0][0]
        assert probs[truth[segment]] == pytest.approx(one, rel=1e-5)  # all ten views agree
    # Not mapped back, the mirrored views would vote for the other direction.
    blind = ViewAverage(views, lambda key, c: c)
    ids, scores, _ = predict(oracle, stream.eval_batches(views), torch.device("cpu"), views=blind)
    for i, segment in enumerate(ids):
        probs = np.exp(scores["verb"][i].astype(np.float64))
        if segment in moving:
            assert probs[MOVE_LEFT] == pytest.approx(probs[MOVE_RIGHT]) and probs.max() < 0.6


# ------------------------------------------------------------------ end to end


def fpar(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_multi_view_run_scores_once_per_segment_on_two_ranks_and_reads_everywhere(
        synthetic_epic55_shards, tmp_path):  # noqa: F811
    shards, kitchens = synthetic_epic55_shards, synthetic_epic55_shards.parent / "kitchens"
    annotations = kitchens / "annotations"
    s2 = tmp_path / "s2"
    fpar("shards", "build", "--format", "epic55", "--root", str(kitchens / "videos"),
         "--annotations", str(annotations), "--split", "s2", "--out", str(s2), "--frames", "4",
         "--short-side", "96", "--no-progress")
    run = tmp_path / "run"
    fpar("train", str(TINY), f"data.train_shards={shards / 'train'}",
         f"eval.test_splits={{s1: {shards / 's1'}, s2: {s2}}}", "data.batch_size=4",
         "train.stages=[{epochs: 1}]", "eval.validate_every_epochs=0", "eval.clips=2",
         "eval.crops=3", "--run-dir", str(run))
    record = {"clips": 2, "crops": 3, "views": 6, "aggregate": "prob"}
    saved = load_experiment(run / "config.yaml").eval
    assert (saved.clips, saved.crops, saved.aggregate) == (2, 3, "prob")
    assert read_views(run / "scores_s1.pt") == record
    # fpar eval on two ranks: every segment once, the one-rank scores of training.
    two = tmp_path / "two.pt"
    fpar("eval", str(run), "--split", "s1", "--nproc", "2", "--out", str(two))
    ids, outputs = load_scores(two)
    one_ids, one_outputs = load_scores(run / "scores_s1.pt")
    assert len(ids) == len(set(ids)) == 4 and sorted(ids) == sorted(one_ids)
    order = [one_ids.index(i) for i in ids]
    for head in ("verb", "noun"):
        np.testing.assert_allclose(outputs[head], one_outputs[head][order], atol=1e-4)
        np.testing.assert_allclose(np.exp(outputs[head].astype(np.float64)).sum(1), 1.0,
                                   rtol=1e-5)
    assert read_views(two) == record
    single = tmp_path / "single.pt"
    fpar("eval", str(run), "--split", "s1", "--clips", "1", "--crops", "1", "--out", str(single))
    assert read_views(single)["views"] == 1
    assert not np.allclose(load_scores(single)[1]["verb"][order], outputs["verb"], atol=1e-3)
    # The official tools read the multi-view files as they are.
    scores = [str(run / "scores_s1.pt"), str(run / "scores_s2.pt")]
    text = fpar("metrics", *scores, "--format", "epic55", "--annotations", str(annotations)).stdout
    assert "[s1] 4 segments" in text and "6 views (2 clips x 3 crops, mean of probabilities)" in text
    archive = tmp_path / "sub.zip"
    fpar("submission", *scores, "--format", "epic55", "--test-timestamps",
         str(annotations / "EPIC_test_s1_timestamps.csv"),
         str(annotations / "EPIC_test_s2_timestamps.csv"), "--out", str(archive))
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == ["seen.json", "unseen.json"]
    result = evaluate_split("epic55", SplitSource("s1", run / "scores_s1.pt",
                                                  annotations=annotations, split="s1"))
    assert result.views == record
    assert "s1: scored from 6 views (2 clips x 3 crops, mean of probabilities)" in \
        metrics_section([result]).notes
    with pytest.raises(AssertionError, match="--crops must be one of"):
        fpar("eval", str(run), "--split", "s1", "--crops", "4")
