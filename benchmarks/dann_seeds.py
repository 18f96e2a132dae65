"""Source-only training against domain-adversarial training (DANN) on the shifted MNIST
domain, over several seeds: `python -m apps.train_dann` at its defaults with and without
--source_only, for each --seeds value, scored by the run's last epoch-end target_accuracy
(the shifted test digits) and source_accuracy (MNIST's test digits) on --eval_samples test
digits of each domain. Prints JSON (and writes it with --out): the runs of each config,
seed by seed, and the mean and standard error over the seeds.

    python -m benchmarks.dann_seeds                          # seeds 0 1 2, 2 jobs
    python -m benchmarks.dann_seeds --seeds 0 --max_steps 20   # a quick look
    python -m benchmarks.dann_seeds --keep runs/dann_seeds --out dann.json
    python -m benchmarks.dann_seeds --table dann.json         # the README's table

Each run is the app a user runs, in its own process, in a run folder under --keep (kept) or
a temporary one, with --threads BLAS/OpenMP threads; with --jobs 2 two runs share the two
cores, so `seconds` (the run's whole wall time) depends on what else runs. A run folder
under --keep that already holds a finished run (metrics.jsonl with an epoch-end score) is
read instead of trained again: a benchmark stopped half way continues where it was.
"""
import argparse
import json
import os
import sys
import tempfile

from benchmarks.techniques import (_emit, add_run_options, cell, last_scored_epoch, run_app,
                                   run_seeds, summary)
from benchmarks.timing import machine

#: config name -> train_dann flags
CONFIGS = {"source_only": ["--source_only"], "dann": []}
FIGURES = ("target_accuracy", "source_accuracy")


def last_accuracies(out_dir):
    """The run's last epoch-end accuracies (metrics.jsonl) and its step."""
    record = last_scored_epoch(out_dir, "target_accuracy",
                               "target_accuracy in metrics.jsonl (did the run reach an epoch "
                               "end?)")
    return dict({name: record[name] for name in FIGURES}, step=record["step"])


def run_one(config, seed, args, folder):
    out_dir = os.path.join(folder, f"{config}-seed{seed}")
    try:
        return dict(last_accuracies(out_dir), seconds=None, run=out_dir, reused=True)
    except (FileNotFoundError, RuntimeError):
        pass
    seconds = run_app(["apps.train_dann", *CONFIGS[config]], out_dir, seed, args, config)
    return dict(last_accuracies(out_dir), seconds=seconds, run=out_dir, reused=False)


def markdown_table(report):
    """One row per config: mean +- standard error over the seeds, and each seed's target
    accuracy."""
    lines = ["| training | command | target accuracy | source accuracy | per seed (target) "
             "|", "|---|---|---|---|---|"]
    for name, row in report["configs"].items():
        seeds = ", ".join(f"{run['target_accuracy']:.3f}" for run in row["runs"])
        lines.append(f"| {name} | `python -m {row['command']}` | "
                     f"{cell(row, 'target_accuracy', 3)} | {cell(row, 'source_accuracy', 3)} "
                     f"| {seeds} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    add_run_options(parser, seeds=[0, 1, 2], eval_help="test digits of each domain scored",
                    max_steps_help="cap each run (default: the app's 8 epochs)")
    parser.add_argument("--keep", default=None,
                        help="keep the run folders under this folder (default: temporary); "
                             "finished runs found there are read, not trained again")
    parser.add_argument("--table", metavar="JSON", default=None,
                        help="print the markdown table of a saved result and stop")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as saved:
            return print(markdown_table(json.load(saved)))
    with tempfile.TemporaryDirectory(prefix="dann-seeds-") as scratch:
        results = run_seeds(run_one, args.configs, args.seeds, args, args.keep or scratch)
    table = {}
    for config, runs in results.items():
        rows = [runs[seed] for seed in args.seeds]
        table[config] = {"command": " ".join(["apps.train_dann", *CONFIGS[config]]),
                         "runs": rows,
                         **summary([{name: row[name] for name in FIGURES} for row in rows])}
    report = {"benchmark": "dann_seeds", "machine": machine(), "seeds": args.seeds,
              "jobs": args.jobs, "threads_per_run": args.threads,
              "eval_samples": args.eval_samples, "max_steps": args.max_steps,
              "configs": table}
    _emit(report, args.out)
    print(markdown_table(report), file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
