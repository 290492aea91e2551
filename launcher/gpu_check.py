"""``make gpu-check``: one short run over the CUDA path, its JSON rewritten after every part.

The parts, cheapest and most telling first, each in fresh processes through the project's
own commands:

1. ``device``: CUDA present (else exit 2 with a message), its name, memory, driver, and
   the precision ``auto`` picks (bf16 only where the GPU computes it in hardware).
2. ``data``: the prebuilt shards of ``--shards`` (the wheelhouse carries some), else
   ``fpar synth`` (small synthetic EPIC-55) and ``fpar shards build`` (train, s1).
3. ``train_<p>`` per precision (bf16, fp16): the paper's SparNet for a few steps with a
   checkpoint halfway and at the end (``fpar.train.run``, deterministic kernels).
4. ``update``: the first optimiser step's relative weight update of each precision against
   fp32's on the same batch; fails when one differs by more than 10% (fp16 whose loss is not
   scaled moves far less).
5. ``restore_<p>``: the newest checkpoint restored as a restarted run does and saved again,
   every saved tensor compared bit for bit; ``resume_<p>``: the run resumed from its
   halfway checkpoint to the end, its last checkpoint compared with the uninterrupted
   run's bit for bit (weights, optimiser, loss scale, RNG states).
6. ``eval``: ``fpar eval`` of the first run on the s1 shards: one finite row per segment.
7. ``bench_loader``: ``fpar bench gpu`` with the shards through K loader workers and pinned
   batches, and batched JPEG decoding on the GPU; ``bench_variants`` (bf16 / fp16, with
   and without channels-last); ``bench_compile``; ``bench_search`` (the largest batch).

After every part the summary so far is written to ``--out`` (atomically), so a check cut
short by a time limit still leaves what finished; warnings printed by the parts are
counted. An error (a command failing, a time-out) stops the check at once; a comparison
that finds differences is recorded and the remaining parts still run. Exit 0 when every
part passed, 1 otherwise, 2 without CUDA (``--allow-cpu`` runs the same parts on the CPU,
for testing; the benchmark parts then report that they need CUDA).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from launcher.benchmarks.gpu_steps import PAPER_CONFIG
from launcher.gpu_check_steps import Check, CheckError, run_steps

DEFAULT_BENCH = "--batch-size 32 --warmup 3 --steps 10"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launcher.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="folder for data, runs and logs (default: a temporary one)")
    p.add_argument("--out", default="gpu-check.json",
                   help="the summary JSON, rewritten after every part (default gpu-check.json)")
    p.add_argument("--shards", metavar="DIR",
                   help="prebuilt shards (DIR/train, DIR/s1) instead of generating them")
    p.add_argument("--time-limit", type=float, default=570.0,
                   help="seconds for the whole check (default 570)")
    p.add_argument("--precisions", default="bf16,fp16", help="trained precisions")
    p.add_argument("--config", default=str(PAPER_CONFIG), help="experiment (default: paper's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for the training runs, repeatable")
    p.add_argument("--batch-size", type=int, default=4, help="clips per training step")
    p.add_argument("--steps", type=int, default=6, help="training steps per run (even)")
    p.add_argument("--participants", type=int, default=4)
    p.add_argument("--segments", type=int, default=320, help="synthetic segments")
    p.add_argument("--size", default="456x256", help="synthetic video size WxH")
    p.add_argument("--frames", type=int, default=8, help="frames stored per segment")
    p.add_argument("--short-side", type=int, default=256, help="stored short side")
    p.add_argument("--bench-args", default=DEFAULT_BENCH,
                   help=f"options of every fpar bench gpu part (default {DEFAULT_BENCH!r})")
    p.add_argument("--skip-bench", action="store_true", help="stop after the evaluation")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run on the CPU when there is no CUDA (tests; use fp32/bf16)")
    args = p.parse_args(argv)
    if args.steps < 2 or args.steps % 2:
        p.error("--steps must be even and >= 2 (a checkpoint halfway and one at the end)")
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu-check: no CUDA device is available (torch "
              f"{torch.__version__}, CUDA {torch.version.cuda or 'none'}); run it on a "
              "machine with a GPU", file=sys.stderr)
        return 2
    if args.work:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        return _finish(args, work)
    with tempfile.TemporaryDirectory(prefix="fpar-gpu-check-") as tmp:
        return _finish(args, Path(tmp))


def _finish(args, work: Path) -> int:
    check = Check(args, work, Path(args.out).resolve())
    failed = None
    try:
        run_steps(check)
    except CheckError as err:
        failed = str(err)
    summary = check.write(finished=True, stopped_by=failed)
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
