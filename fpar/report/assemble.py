"""``make_report``: the report page of a finished run, from its folder.

Gathers the run (``collect``), evaluates each scored split, runs the model on a few clips
(``samples``), draws the figures (``figures``) and writes the page (``page``). A figure
that does not apply to the run (no attention, no MS head, one split only, an unlabelled
split) is replaced by a note saying why.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from tqdm import tqdm

from fpar.engine.checkpoint_files import check_files, checkpoint_files
from fpar.evaluation.metric_sets import metric_set
from fpar.evaluation.views import describe_views
from fpar.report import figures
from fpar.report.collect import (
    RunContents,
    SplitResult,
    class_names_of,
    evaluate_split,
    find_splits,
    read_run,
)
from fpar.report.page import Figure, Section, Table, write_page
from fpar.report.samples import ClipSample, checkpoint_for_report, load_model, sample_clips
from fpar.run_layout import REPORT_DIR, ms_path, scores_files
from shards.datasets import get_dataset
from shards.files import read_json

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 4

#: How EPIC-55's test splits are known in the literature.
SPLIT_TITLES = {"s1": "seen kitchens (S1)", "s2": "unseen kitchens (S2)"}


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _split_title(name: str) -> str:
    return SPLIT_TITLES.get(name, name)


def run_section(run: RunContents, checkpoint: Path | None) -> Section:
    """Name, model, data and training settings, what the run reached."""
    cfg = run.config
    stages = ", ".join(f"{s.name} ({s.epochs} epochs)" for s in cfg.train.stages)
    summary = run.summary or {}
    rows = [
        ["run folder", str(run.run_dir)], ["model", cfg.model.name],
        ["backbone", f"{cfg.model.backbone} (pretrained: {cfg.model.pretrained})"],
        ["classes", ", ".join(f"{k} {v}" for k, v in cfg.model.num_classes.items())],
        ["dataset format", cfg.data.format],
        ["clip", f"{cfg.data.num_frames} frames, {cfg.data.crop_size} px crops"],
        ["batch size per rank", str(cfg.data.batch_size)], ["stages", stages],
        ["precision / ZeRO", f"{cfg.train.precision} / {cfg.train.zero_stage}"],
        ["seed", str(cfg.seed)],
        ["optimiser steps done",
         str(summary.get("step", run.steps[-1]["step"] if run.steps else 0))],
        ["weights shown", checkpoint.name if checkpoint is not None else "no checkpoint"],
    ]
    if "best_score" in summary and summary["best_score"] is not None:
        rows.append([f"best validation {cfg.eval.best_metric}", f"{summary['best_score']:.4f}"])
    notes = list(run.problems)
    if run.summary is None:
        notes.append("the run has no summary.json: it did not finish; what it wrote so far "
                     "is shown")
    return Section("Run", notes=notes, tables=[Table(["setting", "value"], rows)], anchor="run")


def training_section(run: RunContents, out: Path) -> Section:
    """Loss curves and validation metrics from ``metrics.jsonl``."""
    if not run.steps and not run.epochs:
        return Section("Training", notes=["metrics.jsonl has no step or epoch records"],
                       anchor="training")
    figures.training_curves(run.steps, run.epochs, out / "training_curves.png")
    return Section("Training", figures=[Figure("training_curves.png",
                   "training loss (and its parts) per step; validation metrics per epoch")],
                   anchor="training")


def _is_count(metric: str, value: float) -> bool:
    """Segment and class counts are shown as integers."""
    return metric.endswith(("segments", "classes", "classes_present")) and float(value).is_integer()


def metrics_section(results: list[SplitResult]) -> Section:
    """One column per evaluated split; each cell carries its exact value as ``data-value``."""
    notes = [r.note for r in results if r.note]
    notes += [f"{r.source.name}: scored from {describe_views(r.views)}" for r in results
              if r.views]
    scored = [r for r in results if r.flat is not None]
    if not results:
        notes.append("no scores_<split>.pt in the run folder: nothing was evaluated")
    if not scored:
        return Section("Metrics", notes=notes, anchor="metrics")
    names = list(dict.fromkeys(k for r in scored for k in r.flat))
    rows, attrs = [], []
    for metric in names:
        row: list = [metric]
        cell_attrs: list = [None]
        for r in scored:
            value = r.flat.get(metric, float("nan"))
            row.append(int(value) if _is_count(metric, value) else value)
            cell_attrs.append({"split": r.source.name, "metric": metric, "value": repr(value)})
        rows.append(row)
        attrs.append(cell_attrs)
    header = ["metric"] + [_split_title(r.source.name) if r.source.name == r.source.split
                           else f"{r.source.name} ({r.source.split})" for r in scored]
    table = Table(header, rows, "official metrics (accuracies, precision and recall in %)", attrs)
    return Section("Metrics", notes=notes, tables=[table], anchor="metrics")


def split_sections(fmt: str, results: list[SplitResult], out: Path) -> list[Section]:
    """Per-class accuracy and confusion matrix of every task of every labelled split."""
    sections = []
    for result in results:
        if result.flat is None:
            continue
        name = result.source.name
        names = class_names_of(fmt, result.source.annotations, result.source.root)
        figs = []
        for task in result.labels:
            labels, preds = result.labels[task], result.preds[task]
            title = f"{_split_title(name)}: {task}"
            acc = f"per_class_{slug(name)}_{task}.png"
            figures.per_class_accuracy(labels, preds, names.get(task, []), out / acc, title)
            conf = f"confusion_{slug(name)}_{task}.png"
            figures.confusion_matrix(labels, preds, names.get(task, []), out / conf, title)
            figs += [Figure(acc, f"{title}: accuracy of each class (segments in brackets)"),
                     Figure(conf, f"{title}: confusion matrix, rows normalised")]
        sections.append(Section(f"Split {_split_title(name)}", figures=figs,
                                anchor=f"split-{slug(name)}"))
    return sections


def comparison_section(fmt: str, results: list[SplitResult], out: Path) -> Section:
    """Headline metrics of every labelled split side by side (e.g. seen vs unseen)."""
    scored = [r for r in results if r.flat is not None]
    shown = metric_set(get_dataset(fmt))
    title = shown.comparison_title
    if len(scored) < 2:
        return Section(title, notes=[f"{len(scored)} labelled split(s) evaluated: a "
                                     "comparison needs two or more"], anchor="comparison")
    keys = [k for k in shown.headline if all(k in r.flat for r in scored)]
    data = {_split_title(r.source.name): {k: r.flat[k] for k in keys} for r in scored}
    figures.split_comparison(data, out / "split_comparison.png", " vs ".join(data))
    return Section(title, figures=[Figure("split_comparison.png",
                   "headline metrics (%) of each evaluated split")], anchor="comparison")


def _named(names: dict[str, list[str]], task: str, c: int) -> str:
    table = names.get(task, [])
    return table[c] if 0 <= c < len(table) else str(c)


def _clip_title(sample: ClipSample, names: dict[str, list[str]]) -> str:
    true = " ".join(_named(names, k, v) for k, v in sample.labels.items() if v >= 0) or "unlabelled"
    pred = " ".join(_named(names, k, v) for k, v in sample.preds.items())
    return f"{sample.split} segment {sample.segment_id}: true {true} / predicted {pred}"


def ms_score_table(run_dir: Path) -> Table | None:
    """The MS score of every split the run wrote one for (``ms_<split>.json``), or None."""
    rows, kind = [], None
    for name, path in scores_files(run_dir).items():
        file = ms_path(path, name)
        if not file.is_file():
            continue
        try:
            scores = read_json(file)["scores"]
        except (ValueError, KeyError) as err:
            log.warning("%s: unreadable MS score (%s)", file, err)
            continue
        kind = scores["kind"]
        head = {k: f"{v:.3f}" for k, v in (scores["head"] or {}).items()}
        cells = f"{scores['side']}x{scores['side']}"
        share = f"{100 * scores['moving_share']:.1f}%"
        if kind == "classification":
            freq = scores["train_frequency"]
            beyond = scores.get("head_beyond_prior")
            rows.append([_split_title(name), cells, share, head.get("f1", "-"),
                         head.get("iou", "-"), f"{scores['all_static']['f1']:.3f}",
                         f"{freq['f1']:.3f}", f"{freq['iou']:.3f}",
                         "-" if beyond is None else f"{beyond['f1']:.3f}",
                         "-" if beyond is None else f"{100 * beyond['moving_share_of_all']:.0f}%"])
        else:
            rows.append([_split_title(name), cells, share, head.get("mse", "-"),
                         f"{scores['all_static']['mse']:.4f}",
                         f"{scores['train_frequency']['mse']:.4f}"])
    if not rows:
        return None
    if kind == "classification":
        header = ["split", "cells", "moving", "head F1", "head IoU", "all static F1",
                  "training frequency F1", "training frequency IoU",
                  "head F1 where the training frequency says static", "moving cells there"]
    else:
        header = ["split", "cells", "moving (mean fraction)", "head MSE", "all static MSE",
                  "training mean MSE"]
    return Table(header, rows, caption="MS score: the head's moving/static prediction per "
                 "cell against the motion maps (training's crop and threshold), next to "
                 "predicting all static and each cell's training frequency; then the head's F1 "
                 "on the cells that the training frequency calls static, where only a head "
                 "that reads the frame finds motion, and the share of moving cells there")


def clip_sections(model_name: str, samples: list[ClipSample], names: dict, out: Path,
                  why_none: str | None, ms_table: Table | None = None) -> list[Section]:
    """Attention overlays and predicted vs target motion maps of the sampled clips, after
    the MS score table when there is one."""
    att = Section("Attention", anchor="attention")
    ms = Section("Motion segmentation", anchor="motion")
    if ms_table is not None:
        ms.tables.append(ms_table)
    if why_none is not None:
        att.notes.append(why_none)
        ms.notes.append(why_none)
        return [att, ms]
    for sample in samples:
        title = _clip_title(sample, names)
        stem = f"{slug(sample.split)}_{slug(sample.segment_id)}"
        if sample.attention is not None:
            file = f"attention_{stem}.png"
            figures.attention_overlays(sample.frames, sample.attention, out / file, title)
            att.figures.append(Figure(file, title))
        if sample.ms_pred is not None and sample.ms_target is not None:
            file = f"motion_{stem}.png"
            figures.motion_maps(sample.frames, sample.ms_target, sample.ms_pred, out / file,
                                title, fraction=sample.fraction)
            ms.figures.append(Figure(file, title))
    if not att.figures:
        att.notes.append(f"{model_name} applies no spatial attention (its output has no "
                         "attention maps): no attention overlays")
    if not ms.figures:
        ms.notes.append(f"{model_name} has no motion-segmentation head: no predicted vs "
                        "target motion maps")
    return [att, ms]


def _run_samples(run: RunContents, results: list[SplitResult], count: int,
                 checkpoint: Path | None, trust: bool) -> tuple[list[ClipSample], str | None]:
    if count < 1:
        return [], "no clips were run (--samples 0)"
    if checkpoint is None:
        return [], "the run has no complete checkpoint: no clips were run"
    folders = [(r.source.name, r.source.shards) for r in results
               if r.source.shards and Path(r.source.shards).is_dir()]
    if not folders:
        return [], "no shard folder of an evaluated split is reachable: no clips were run"
    model = load_model(run.config, checkpoint, trust)
    samples: list[ClipSample] = []
    for name, folder in tqdm(folders, desc="clips", unit="split", leave=False):
        samples += sample_clips(model, run.config, folder, name, count)
    return samples, None


def make_report(run_dir: str | Path, out: str | Path | None = None,
                samples: int = DEFAULT_SAMPLES, annotations: str | Path | None = None,
                root: str | Path | None = None, trust_checkpoint: bool = False) -> Path:
    """Writes the report page of a run and its figures.

    Args:
        run_dir: The run folder.
        out: Output folder (default ``run_dir/report``); PNGs go beside ``index.html``.
        samples: Clips per evaluated split run through the model for the attention and
            motion-map figures (0 = none).
        annotations: Annotation folder for every split instead of the ones recorded in
            the splits' shard manifests.
        root: GTEA-61 frame root, likewise.
        trust_checkpoint: Read the checkpoint with full unpickling (else weights-only).

    Returns:
        The page, ``out/index.html``.

    Raises:
        fpar.report.collect.ReportError: If the run folder cannot be read.
        fpar.engine.checkpoint_files.CheckpointRefused: A checkpoint file needs a type
            beyond the allow-list.
    """
    run = read_run(run_dir)
    out = Path(out) if out is not None else run.run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    fmt = run.config.data.format
    sources = find_splits(run, annotations, root)
    checkpoint = checkpoint_for_report(run.run_dir, run.config)
    if samples > 0 and checkpoint is not None:  # refused before any work, not after
        check_files(checkpoint_files(checkpoint), trust_checkpoint)
    results = [evaluate_split(fmt, s)
               for s in tqdm(sources, desc="splits", unit="split", leave=False)]
    clips, why_none = _run_samples(run, results, samples, checkpoint, trust_checkpoint)
    ann = next((r.source for r in results if r.source.annotations is not None), None)
    names = class_names_of(fmt, ann.annotations, ann.root) if ann else {}
    sections = [run_section(run, checkpoint), training_section(run, out), metrics_section(results)]
    sections += split_sections(fmt, results, out)
    sections.append(comparison_section(fmt, results, out))
    sections += clip_sections(run.config.model.name, clips, names, out, why_none,
                              ms_score_table(run.run_dir))
    sections.append(Section("Configuration", preformatted=run.config_text, anchor="config"))
    subtitle = f"{run.config.model.name} on {fmt}"
    page = write_page(out, f"Run {run.config.name}", sections, subtitle)
    log.info("report of %s -> %s", run.run_dir, page)
    return page
