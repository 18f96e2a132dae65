"""What each toolkit technique buys on the main job: train_dcgan at its default budget (one
epoch of MNIST, 937 steps of 64), each technique on its own and the modern recipe, over
several seeds, scored by the shipped classifier (gan.metrics: FID, KID, precision, recall,
digits covered) on --eval_samples samples. Prints JSON (and writes it with --out).

    python -m benchmarks.techniques                       # every config, 3 seeds, 2 jobs
    python -m benchmarks.techniques --configs classic ema --seeds 0 1 2 3
    python -m benchmarks.techniques --max_steps 50 --seeds 0 --configs classic  # a quick look
    python -m benchmarks.techniques --time --configs classic modern   # step times only
    python -m benchmarks.techniques --table results.json          # the README's table

Each run is `python -m apps.train_dcgan --seed S --evaluate ... FLAGS` in its own process,
exactly what a user runs, in a temporary run folder. With --jobs 2 two runs share the two
cores, each with one BLAS/OpenMP thread; `seconds` is the run's whole wall time, evaluation
included, which depends on what else runs (compare costs with --time). A run with EMA
(--ema) is scored on its averaged generator
(the ema_ figures), which is what it samples; G's own figures are kept as g_fid etc.

--time measures the training step alone instead: each config's recipe is built by
train_dcgan's own code (apps.train_dcgan.build) in this process and the configs' steps
alternate on the same batches (the mean of --repeat steps after warm-up: a lazy penalty
costs one step in k, which a median would hide), so a technique's cost is compared under one
load; `step_ratio` is over classic's.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.timing import machine
from needle.fileio import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: config name -> train_dcgan flags (on top of the classic recipe, the default)
CONFIGS = {
    "classic": [],
    "spectral_norm": ["--spectral_norm"],
    "ema": ["--ema", "0.995", "--ema_start", "100"],
    "ema_short": ["--ema", "0.99", "--ema_start", "400"],
    "diffaugment": ["--diffaugment", "color,translation,cutout"],
    "hinge": ["--objective", "hinge"],
    "ttur": ["--d_lr", "4e-4", "--g_lr", "1e-4"],
    "lazy_r1": ["--r1", "1", "--lazy_every", "16"],
    "rpgan": ["--objective", "rpgan"],
    "minibatch_std": ["--minibatch_std"],
    "rpgan_lazy_r1": ["--objective", "rpgan", "--r1", "1", "--lazy_every", "16"],
    "modern": ["--recipe", "modern"],
}
SCORES = ("fid", "kid", "precision", "recall", "density", "coverage", "digits_covered")


def run_app(module_args, out_dir, seed, args, label):
    """`python -m <module_args>` into `out_dir` with `seed`, args.eval_samples scored, no
    progress bar or mid-epoch pictures, args.max_steps when given and args.threads BLAS
    threads; returns its wall seconds. A failed run raises with its last error line."""
    command = [sys.executable, "-m", *module_args, "--out_dir", out_dir, "--seed", str(seed),
               "--eval_samples", str(args.eval_samples), "--no_progress",
               "--sample_every", "100000"]
    if args.max_steps:
        command += ["--max_steps", str(args.max_steps)]
    env = dict(os.environ, **{name: str(args.threads) for name in
                              ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{label} seed {seed} failed ({done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:]}")
    return round(seconds, 1)


def last_scored_epoch(out_dir, score="fid",
                      missing="scores in metrics.jsonl (was it run with --evaluate to an "
                              "epoch end?)"):
    """The run's last epoch-end record that has `score` (metrics.jsonl); a run without one
    raises "no epoch-end <missing>"."""
    with open(os.path.join(out_dir, "metrics.jsonl")) as lines:
        epochs = [record for record in map(json.loads, lines)
                  if record.get("kind") == "epoch" and score in record]
    if not epochs:
        raise RuntimeError(f"{out_dir}: no epoch-end {missing}")
    return epochs[-1]


def add_run_options(parser, seeds, eval_help=None, max_steps_help=None):
    """The options of every study that trains apps over seeds (techniques, generative_table,
    dann_seeds): --seeds, --jobs, --threads, --eval_samples, --max_steps, --out."""
    parser.add_argument("--seeds", nargs="+", type=int, default=list(seeds))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per run")
    parser.add_argument("--eval_samples", type=int, default=2000, help=eval_help)
    parser.add_argument("--max_steps", type=int, default=None, help=max_steps_help)
    parser.add_argument("--out", default=None, help="also write the JSON to this file")


def run_seeds(run_one, names, seeds, args, folder):
    """{name: {seed: run_one(name, seed, args, folder)}} for every name and seed, args.jobs
    runs at a time, each result printed to stderr as it comes."""
    results = {name: {} for name in names}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, name, seed, args, folder): (name, seed)
                   for seed in seeds for name in names}
        for future in concurrent.futures.as_completed(futures):
            name, seed = futures[future]
            results[name][seed] = future.result()
            print(f"{name} seed {seed}: {results[name][seed]}", file=sys.stderr)
    return results


def run_one(config, seed, args, folder):
    out_dir = os.path.join(folder, f"{config}-seed{seed}")
    seconds = run_app(["apps.train_dcgan", "--evaluate", *CONFIGS[config]], out_dir, seed,
                      args, config)
    return dict(_scores(out_dir, "--ema" in CONFIGS[config] or config == "modern"),
                seconds=seconds)


def _scores(out_dir, prefer_ema):
    """The last epoch-end scores of the run; EMA(G)'s when the run keeps one."""
    record = last_scored_epoch(out_dir)
    use_ema = prefer_ema and "ema_fid" in record
    scores = {name: record[("ema_" if use_ema else "") + name] for name in SCORES
              if ("ema_" if use_ema else "") + name in record}
    if use_ema:
        scores.update({f"g_{name}": record[name] for name in SCORES if name in record})
    return dict(scores, scored="EMA(G)" if use_ema else "G", step=record["step"])


def summary(runs):
    """Mean and standard error (std / sqrt(n)) of every figure over the seeds."""
    out = {}
    for name in runs[0]:
        values = [run[name] for run in runs if isinstance(run.get(name), (int, float))]
        if len(values) == len(runs):
            sem = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
            out[name] = {"mean": statistics.fmean(values), "sem": sem}
    return out


def step_times(args):
    """Mean (and median) ms of one training step per config, alternating between configs."""
    from apps import train_dcgan
    from apps.techniques import resolve_techniques
    steppers = []
    for config in args.configs:
        parser = train_dcgan.build_parser()
        options = resolve_techniques(parser, parser.parse_args(
            ["--out_dir", os.path.join(tempfile.gettempdir(), "unused"), "--no_progress",
             *CONFIGS[config]]))
        recipe, data = train_dcgan.build(options)
        recipe.start(data.steps_per_epoch)
        data.shuffle()
        counter = {"step": 0}

        def step(recipe=recipe, data=data, counter=counter):
            recipe.step(data.batch(counter["step"] % data.steps_per_epoch), counter["step"])
            counter["step"] += 1
        steppers.append(step)
    for step in steppers:  # warm-up
        for _ in range(3):
            step()
    times = [[] for _ in steppers]
    for _ in range(args.repeat):
        for step, spent in zip(steppers, times):
            start = time.perf_counter()
            step()
            spent.append(time.perf_counter() - start)
    # the mean, not the median: a lazy penalty costs one step in k and a median hides it
    rows = {config: {"flags": " ".join(CONFIGS[config]),
                     "step_ms": round(1000 * statistics.fmean(spent), 1),
                     "median_ms": round(1000 * statistics.median(spent), 1)}
            for config, spent in zip(args.configs, times)}
    if "classic" in rows:
        for row in rows.values():
            row["step_ratio"] = round(row["step_ms"] / rows["classic"]["step_ms"], 3)
    return {"benchmark": "techniques --time", "machine": machine(), "repeat": args.repeat,
            "threads": os.environ.get("OMP_NUM_THREADS", "default"), "configs": rows}


def cell(row, name, digits):
    """A summary figure of `row` as 'mean ± standard error' ('' when the row lacks it)."""
    figure = row.get(name)
    if not figure:
        return ""
    sem = "" if figure["sem"] is None else f" ± {figure['sem']:.{digits}f}"
    return f"{figure['mean']:.{digits}f}{sem}"


def markdown_table(report, times=None):
    """The README's table: one row per config, mean +- standard error over the seeds, and
    the step time over classic's from a --time report."""
    lines = ["| config | flags | FID | KID | precision | recall | digits | step time |",
             "|---|---|---|---|---|---|---|---|"]
    steps = (times or {}).get("configs", {})
    for name, row in report["configs"].items():
        ratio = steps.get(name, {}).get("step_ratio")
        flags = f"`{row['flags']}`" if row["flags"] else ""
        lines.append(f"| {name} | {flags} | {cell(row, 'fid', 1)} | {cell(row, 'kid', 3)} | "
                     f"{cell(row, 'precision', 2)} | {cell(row, 'recall', 2)} | "
                     f"{cell(row, 'digits_covered', 1)} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    add_run_options(parser, seeds=[0, 1, 2],
                    max_steps_help="cap each run (default: the main job's one epoch)")
    parser.add_argument("--time", action="store_true",
                        help="time the configs' training steps in this process instead")
    parser.add_argument("--repeat", type=int, default=32, help="with --time: timed steps")
    parser.add_argument("--table", nargs="+", metavar="JSON", default=None,
                        help="print the markdown table of saved results (training JSONs, "
                             "then optionally one --time JSON) and stop")
    args = parser.parse_args(argv)
    if args.table:
        return print(markdown_table(*_merged(args.table)))
    if args.time:
        return _emit(step_times(args), args.out)
    with tempfile.TemporaryDirectory(prefix="techniques-") as folder:
        results = run_seeds(run_one, args.configs, args.seeds, args, folder)
    table = {config: {"flags": " ".join(CONFIGS[config]),
                      "runs": [runs[seed] for seed in args.seeds],
                      **summary([runs[seed] for seed in args.seeds])}
             for config, runs in results.items()}
    report = {"benchmark": "techniques", "machine": machine(), "seeds": args.seeds,
              "jobs": args.jobs, "threads_per_run": args.threads,
              "eval_samples": args.eval_samples, "max_steps": args.max_steps,
              "configs": table}
    _emit(report, args.out)


def _merged(paths):
    """(the training reports' configs merged, the --time report or None)."""
    merged, times = {"configs": {}}, None
    for path in paths:
        with open(path) as saved:
            report = json.load(saved)
        if report["benchmark"] == "techniques --time":
            times = report
        else:
            merged["configs"].update(report["configs"])
    return merged, times


def _emit(report, out):
    text = json.dumps(report, indent=1)
    if out:
        atomic_write(out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
