"""Running a protocol: shards for its splits, one sweep over splits x seeds, its table.

``run_protocol`` builds (or completes: builds resume) the shards of every dataset split
the protocol reads, once per distinct split, writes ``SWEEP_DIR/protocol.json``, and
submits one job array through ``launcher.submit`` whose axes are the protocol's splits
(a bundling axis: each value sets the run's training and test shards) and the seeds.
Every run trains through ``train_and_score``: ``fpar.train.run``, then the official
metrics of its test split into ``<run>/metrics.json``, which ``fpar collect`` reads.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

from fpar.config import ConfigError
from fpar.run_layout import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE
from launcher import sweep as sweeps
from launcher.protocols import METRICS, Protocol, get_protocol, shard_sources, split_axis
from launcher.submit import SubmitOptions, submit_runs
from shards.files import atomic_write_json, read_json

log = logging.getLogger(__name__)

PROTOCOL_FILE = "protocol.json"
AXIS_FILE = "split_axis.json"
ENTRY = "launcher.protocol_run:train_and_score"


class ProtocolError(RuntimeError):
    """A protocol that cannot run as asked (bad data, failed shard builds)."""


@dataclasses.dataclass
class ShardOptions:
    """How the protocol's shards are built (see ``shards.build.BuildConfig``)."""

    frames: int | None = None
    short_side: int | None = None
    flow: bool = False
    workers: int = 1
    slurm: Any = None  # launcher.shards_slurm.SlurmBuildOptions: build as SLURM job arrays


def check_format(protocol: Protocol, config: str, overrides: Sequence[str]) -> None:
    """Refuses an experiment made for another dataset than the protocol's.

    Raises:
        ConfigError: Naming both formats.
    """
    from fpar.experiment import load_experiment

    fmt = load_experiment(config, overrides).data.format
    if fmt != protocol.format:
        raise ConfigError(f"{config}: trains data.format={fmt}, but protocol {protocol.name} "
                          f"is on {protocol.format}")


def build_protocol_shards(protocol: Protocol, root: str | Path, annotations: str | Path,
                          shards: str | Path, options: ShardOptions) -> dict[str, Path]:
    """Builds (or completes) the shards of every dataset split the protocol reads.

    Splits holding the same segments share one folder, ``shards/<first such split>``. With
    ``options.slurm`` each split is built by a SLURM job array (``launcher.shards_slurm``),
    one split after the other, the same bytes as a local build.

    Returns:
        The shard folder of each dataset split the protocol reads.

    Raises:
        ProtocolError: If a build left segments out (its manifest lists them).
    """
    from shards.build import BuildConfig, build_shards

    sources = shard_sources(protocol, annotations, root)
    extra = {k: v for k, v in (("frames", options.frames), ("short_side", options.short_side))
             if v is not None}
    folders: dict[str, Path] = {}
    for split in dict.fromkeys(sources.values()):
        out = Path(shards).resolve() / split
        cfg = BuildConfig(format=protocol.format, root=str(root), annotations=str(annotations),
                          split=split, out=str(out), workers=options.workers,
                          flow=options.flow, **extra)
        log.info("shards of %s %s -> %s", protocol.format, split, out)
        if options.slurm is not None:
            from launcher.shards_slurm import build_on_slurm

            if build_on_slurm(cfg, options.slurm) != 0:
                raise ProtocolError(f"{protocol.format} {split}: the SLURM shard build did not write every "
                                    f"segment (see above and {out}); run the same command again to resume")
        else:
            report = build_shards(cfg, progress=True)
            if not report.ok:
                raise ProtocolError(f"{protocol.format} {split}: {len(report.failures)} segment(s) "
                                    f"could not be written; see {out / 'manifest.json'}")
        folders[split] = out
    return {name: folders[source] for name, source in sources.items()}


def run_protocol(protocol_name: str, config: str, overrides: Sequence[str], root: str | Path,
                 annotations: str | Path | None, shards: str | Path, out: str | Path,
                 seeds: Sequence[int] = (0, 1, 2), shard_options: ShardOptions | None = None,
                 submit: SubmitOptions | None = None) -> tuple[Path, list]:
    """Builds the shards and submits the protocol's runs as one job array.

    Args:
        protocol_name: A name of ``launcher.protocols.PROTOCOLS``.
        config: The experiment YAML (its data.format must be the protocol's).
        overrides: ``a.b=value`` overrides for every run.
        root: Raw data: videos (EGTEA) or the frame folder root (GTEA-61).
        annotations: Annotation folder (default ``root``; GTEA-61 reads the frame folders).
        shards: Parent folder of the shard folders, one per dataset split.
        out: The sweep folder: a run folder per split and seed, ``protocol.json``.
        seeds: The seeds each split is run with.
        shard_options: How shards are built.
        submit: Resources and executor (its config, overrides, folder, sweep and entry
            are set here).

    Returns:
        The sweep folder and the submitted jobs.

    Raises:
        ConfigError: For a configuration that cannot load or is for another dataset.
        ProtocolError: If a shard build left segments out.
    """
    protocol = get_protocol(protocol_name)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ConfigError("--seeds: at least one seed is needed")
    check_format(protocol, config, overrides)
    annotations = annotations if annotations is not None else root
    shard_dirs = build_protocol_shards(protocol, root, annotations, shards,
                                       shard_options or ShardOptions())
    out = Path(out).resolve()
    axis = split_axis(protocol, shard_dirs)
    axis_file = sweeps.write_axis_file(out / AXIS_FILE, axis)
    atomic_write_json(out / PROTOCOL_FILE, {
        "protocol": protocol.name, "title": protocol.title, "format": protocol.format,
        "config": str(config), "overrides": list(overrides), "seeds": seeds,
        "root": str(Path(root).resolve()), "annotations": str(Path(annotations).resolve()),
        "metrics": list(METRICS),
        "splits": [{"name": s.name, "train": s.train, "test": s.test,
                    "train_shards": str(shard_dirs[s.train]),
                    "test_shards": str(shard_dirs[s.test])} for s in protocol.splits],
    })
    base = submit or SubmitOptions(config=str(config))
    opts = dataclasses.replace(
        base, config=str(config), overrides=list(overrides), folder=str(out),
        sweep=[f"@{axis_file}", f"seed={','.join(map(str, seeds))}"], entry=ENTRY,
        eval_splits=None, job_name=base.job_name or f"fpar-{protocol.name}")
    folder, jobs = submit_runs(opts)
    sweeps.record_metrics(folder, METRICS)
    log.info("%s: %d splits x %d seeds = %d runs in %s", protocol.title, len(protocol.splits),
             len(seeds), len(jobs), folder)
    return folder, jobs


def score_run(run_dir: str | Path) -> dict[str, Any]:
    """Official metrics of a protocol run's test split(s), written to ``<run>/metrics.json``.

    The annotations come from ``protocol.json`` in the sweep folder (the run's parent).

    Raises:
        FileNotFoundError: If the sweep folder has no protocol.json or the run no scores file.
        fpar.evaluation.EvaluationError: If the scores do not cover the test split.
    """
    from fpar.evaluation.run_metrics import score_run as score_scores

    run_dir = Path(run_dir)
    info_path = run_dir.parent / PROTOCOL_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path}: not in a protocol's sweep folder "
                                "(written by `fpar protocol`)")
    info = read_json(info_path)
    return score_scores(run_dir, annotations=info["annotations"], root=info.get("root"))


def finished_summary(config: str, overrides: Sequence[str], run_dir: str | Path) -> dict | None:
    """The saved summary of a run that finished and was scored with this very config.

    A protocol submitted again into the same sweep folder then skips the runs already done
    (no retraining, no re-scoring); a run whose config differs is trained again.
    """
    from fpar.run_setup import resolve_config

    run_dir = Path(run_dir)
    needed = [run_dir / name for name in (CONFIG_FILE, SUMMARY_FILE, METRICS_FILE)]
    if not all(path.is_file() for path in needed):
        return None
    if resolve_config(config, overrides, run_dir) != resolve_config(None, (), run_dir):
        return None
    return read_json(run_dir / SUMMARY_FILE)


def train_and_score(config: str, overrides: Sequence[str], run_dir: str,
                    resume: bool) -> dict[str, Any]:
    """The entry of every protocol run: train and test (``fpar.train.run``), then score.

    Same arguments as ``fpar.train.run``; rank 0 writes ``<run>/metrics.json``. A run that
    already finished with the same config returns its saved summary.
    """
    from fpar.engine.distributed import read_env
    from fpar.train import run

    done = finished_summary(config, overrides, run_dir)
    if done is not None:
        log.info("%s: finished earlier with this config; kept as it is", run_dir)
        return done
    summary = run(config, overrides, run_dir, resume)
    if read_env().is_main:
        result = score_run(run_dir)
        summary["metrics"] = {split: {k: m[k] for k in METRICS}
                              for split, m in result["splits"].items()}
        log.info("%s: %s", run_dir, summary["metrics"])
    return summary


def fill_missing_metrics(sweep_dir: str | Path) -> list[str]:
    """Scores every finished run of the sweep that has no metrics.json yet.

    Returns:
        A line per run that could not be scored (unfinished or failed runs).
    """
    sweep_dir = Path(sweep_dir)
    left = []
    for run in sweeps.read_sweep_file(sweep_dir)["runs"]:
        run_dir = sweep_dir / run["name"]
        if (run_dir / METRICS_FILE).is_file():
            continue
        try:
            score_run(run_dir)
        except (OSError, ValueError) as err:  # ConfigError, EvaluationError included
            left.append(f"{run['name']}: {err}")
    return left


__all__ = ["ENTRY", "PROTOCOL_FILE", "ProtocolError", "ShardOptions", "build_protocol_shards",
           "check_format", "fill_missing_metrics", "run_protocol", "score_run", "train_and_score"]
