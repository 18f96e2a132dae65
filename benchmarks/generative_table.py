"""VAE against AAE against DCGAN on MNIST at their default budgets (one epoch, 937 steps of
64), scored the same way: the shipped classifier's FID, KID, precision and recall
(gan.metrics.Evaluator) on --eval_samples samples, for the VAE and the AAE decoded prior
samples, for the DCGAN G's samples. Prints JSON (and writes it with --out).

    python -m benchmarks.generative_table                     # every model, seed 0, 2 jobs
    python -m benchmarks.generative_table --models vae aae --seeds 0 1 2
    python -m benchmarks.generative_table --max_steps 50      # a quick look
    python -m benchmarks.generative_table --table results.json   # the README's table
    python -m benchmarks.generative_table --reuse dcgan=runs/dcgan   # a finished run's scores

Each run is the app a user runs, in its own process, in a run folder under --keep (kept:
their pictures, latent.png included) or a temporary one:

    vae     python -m apps.train_aae --model vae                  (2-D codes, N(0, I))
    aae     python -m apps.train_aae --model aae                  (2-D codes, mixture10)
    vae_8d  python -m apps.train_aae --model vae --latent_dim 8
    aae_8d  python -m apps.train_aae --model aae --prior normal --latent_dim 8
    dcgan   python -m apps.train_dcgan --evaluate                 (z of 100 dimensions)

With --jobs 2 two runs share the two cores, each with --threads BLAS/OpenMP threads;
`seconds` is the run's whole wall time, evaluation included, which depends on what else
runs. --reuse MODEL=RUN_DIR takes a finished run's last epoch-end scores instead of training
that model (its flags must be the model's; the run's seed is not checked).
"""
import argparse
import json
import os
import sys
import tempfile

from benchmarks.techniques import (SCORES, _emit, add_run_options, cell, last_scored_epoch,
                                   run_app, run_seeds, summary)
from benchmarks.timing import machine

#: model name -> the command after `python -m`
MODELS = {
    "vae": ["apps.train_aae", "--model", "vae"],
    "aae": ["apps.train_aae", "--model", "aae"],
    "vae_8d": ["apps.train_aae", "--model", "vae", "--latent_dim", "8"],
    "aae_8d": ["apps.train_aae", "--model", "aae", "--prior", "normal", "--latent_dim", "8"],
    "dcgan": ["apps.train_dcgan", "--evaluate"],
}
FIGURES = SCORES + ("test_mse",)  # test_mse: the autoencoders' held-out reconstruction error


def scores(out_dir):
    """The run's last epoch-end figures (FIGURES it has) and its step."""
    record = last_scored_epoch(out_dir)
    return dict({name: record[name] for name in FIGURES if name in record},
                step=record["step"])


def run_one(model, seed, args, folder):
    out_dir = os.path.join(folder, f"{model}-seed{seed}")
    seconds = run_app(MODELS[model], out_dir, seed, args, model)
    return dict(scores(out_dir), seconds=seconds, run=out_dir)


def markdown_table(report):
    """One row per model: mean (+- standard error over the seeds, with several)."""
    lines = ["| model | command | FID | KID | precision | recall | digits | held-out MSE "
             "| seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        lines.append(f"| {name} | `python -m {row['command']}` | {cell(row, 'fid', 1)} | "
                     f"{cell(row, 'kid', 3)} | {cell(row, 'precision', 2)} | "
                     f"{cell(row, 'recall', 2)} | {cell(row, 'digits_covered', 1)} | "
                     f"{cell(row, 'test_mse', 3)} | {cell(row, 'seconds', 0)} |")
    return "\n".join(lines)


def _reused(pairs, parser):
    runs = {}
    for pair in pairs:
        model, _, folder = pair.partition("=")
        if model not in MODELS or not folder:
            parser.error(f"--reuse {pair!r}: expected MODEL=RUN_DIR with MODEL one of "
                         f"{', '.join(MODELS)}")
        runs[model] = folder
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    add_run_options(parser, seeds=[0],
                    max_steps_help="cap each run (default: each app's one epoch)")
    parser.add_argument("--keep", default=None,
                        help="keep the run folders under this folder (default: temporary)")
    parser.add_argument("--reuse", nargs="+", default=[], metavar="MODEL=RUN_DIR",
                        help="take these models' scores from finished runs (one seed)")
    parser.add_argument("--table", metavar="JSON", default=None,
                        help="print the markdown table of a saved result and stop")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as saved:
            return print(markdown_table(json.load(saved)))
    reused = _reused(args.reuse, parser)
    if reused and len(args.seeds) > 1:
        parser.error("--reuse takes one finished run per model: give one --seeds value")
    with tempfile.TemporaryDirectory(prefix="generative-") as scratch:
        trained = run_seeds(run_one, [model for model in args.models if model not in reused],
                            args.seeds, args, args.keep or scratch)
    results = {model: {seed: dict(scores(reused[model]), run=reused[model])
                       for seed in args.seeds} if model in reused else trained[model]
               for model in args.models}
    table = {}
    for model, runs in results.items():
        rows = [runs[seed] for seed in args.seeds]
        table[model] = {"command": " ".join(MODELS[model]), "runs": rows,
                        **summary([{k: v for k, v in row.items() if k != "run"}
                                   for row in rows])}
    report = {"benchmark": "generative_table", "machine": machine(), "seeds": args.seeds,
              "jobs": args.jobs, "threads_per_run": args.threads,
              "eval_samples": args.eval_samples, "max_steps": args.max_steps,
              "reused": reused, "models": table}
    _emit(report, args.out)
    print(markdown_table(report), file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
