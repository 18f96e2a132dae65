"""Data-parallel DCGAN training on this machine: 2 ranks x 1 thread against 1 process x 2
threads, on the same global batch, and what the gradient all-reduce costs.

    python -m benchmarks.distributed                    # 3 rounds of 10 timed steps each
    python -m benchmarks.distributed --rounds 5 --steps 20 --sync_bn

The model is apps.train_dcgan's 28x28 DCGAN (G 100-256-128-1, D 1-64-128-1 at width 64),
one D step and one G step per step (Adam, non-saturating loss) on random images in [-1, 1].
Each round runs both configurations, one after the other, in fresh processes:

  * one process, OPENBLAS_NUM_THREADS=2, batch B (the global batch);
  * `mpiexec -n 2`, OPENBLAS_NUM_THREADS=1 per rank, batch B/2 per rank, gradients averaged
    by needle.distributed (average_gradients: one bucketed all-reduce per optimizer step).

Per configuration: the median step time, images per second (global batch / step time) and,
on 2 ranks, the seconds per step spent inside all-reduce calls (gradients, and SyncBatchNorm's
statistics with --sync_bn), which include waiting for the slower rank; plus the all-reduce of
one step's gradients alone (both ranks ready, no compute): the cost of the wire itself.
Medians over the rounds. Prints JSON, with the parameter counts and gradient bytes per step.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _models(args, norm):
    import needle as ndl
    from gan import Adversarial
    from gan.models.dcgan import Discriminator, Generator
    from gan.objectives import NonSaturating

    np.random.seed(0)
    G = Generator(100, channels=1, image_size=28, width=args.width, norm=norm)
    D = Discriminator(channels=1, image_size=28, width=args.width, norm=norm)
    g_opt = ndl.optim.Adam(G.parameters(), lr=2e-4, beta1=0.5)
    adversarial = Adversarial(D, NonSaturating(),
                              ndl.optim.Adam(D.parameters(), lr=2e-4, beta1=0.5))
    return G, adversarial, g_opt


def worker(args):
    """One configuration's steps (under mpiexec: this rank's); rank 0 prints one JSON line."""
    import needle as ndl
    import needle.distributed as dist

    if args.ranks > 1:
        group = dist.init(timeout=600)
        spent = _time_all_reduce(group)
    G, adversarial, g_opt = _models(args, "syncbatch" if args.sync_bn else "batch")
    if args.ranks > 1:
        dist.broadcast_parameters(G)
        dist.broadcast_parameters(adversarial)
        dist.average_gradients(adversarial.optimizer)
        dist.average_gradients(g_opt)
    batch = args.batch // args.ranks
    rng = np.random.RandomState(1)
    times, comm = [], []
    for step in range(args.warmup + args.steps):
        real = ndl.Tensor(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32),
                          requires_grad=False)
        z = dist.shard_randn(batch, 100)
        if args.ranks > 1:
            spent.clear()
        start = time.perf_counter()
        fake = G(z)
        adversarial.discriminator_step(real, fake)
        g_loss = adversarial.generator_loss(fake)
        g_opt.reset_grad()
        g_loss.backward(create_graph=False)
        g_opt.step()
        float(g_loss.numpy())
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            comm.append(sum(spent) if args.ranks > 1 else 0.0)
    result = {"step_s": statistics.median(times), "all_reduce_s_per_step":
              statistics.median(comm)}
    if args.ranks > 1:  # every rank takes part
        result["gradient_all_reduce_alone_s"] = _gradients_alone(G, adversarial, group)
    if dist.rank() == 0:
        print(json.dumps(result), flush=True)


def _time_all_reduce(group):
    """Wrap the group's all_reduce_sum to add each call's seconds to the returned list."""
    spent, inner = [], group.all_reduce_sum

    def timed(array, what="all_reduce"):
        start = time.perf_counter()
        inner(array, what)
        spent.append(time.perf_counter() - start)

    group.all_reduce_sum = timed
    return spent


def _gradients_alone(G, adversarial, group, repeat=10):
    """Median seconds of averaging one step's gradients (G's and D's) with both ranks ready."""
    import needle as ndl
    import needle.distributed as dist

    params = G.parameters() + adversarial.discriminator.parameters()
    samples = []
    for _ in range(repeat):
        for p in params:
            p.grad = ndl.Tensor(np.ones(p.shape, np.float32), requires_grad=False)
        group.barrier()
        start = time.perf_counter()
        dist.all_reduce_gradients(params, group=group)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _launch(args, ranks):
    threads = "2" if ranks == 1 else "1"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "PYTHONPATH": ROOT}
    command = [sys.executable, "-m", "benchmarks.distributed", "--worker", "--ranks",
               str(ranks), "--batch", str(args.batch), "--width", str(args.width),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.sync_bn:
        command.append("--sync_bn")
    if ranks > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        command = [mpiexec if os.access(mpiexec, os.X_OK) else "mpiexec", "-n", str(ranks),
                   *command]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1800)
    if out.returncode != 0:
        sys.exit(f"benchmarks.distributed: {' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _parameter_counts(args):
    G, adversarial, _ = _models(args, "batch")
    count = {"generator": sum(int(np.prod(p.shape)) for p in G.parameters()),
             "discriminator": sum(int(np.prod(p.shape))
                                  for p in adversarial.discriminator.parameters())}
    count["gradient_bytes_per_step"] = 4 * (count["generator"] + count["discriminator"])
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="global batch (both ranks)")
    parser.add_argument("--width", type=int, default=64, help="DCGAN channel width unit")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration")
    parser.add_argument("--sync_bn", action="store_true", help="SyncBatchNorm in G and D")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    runs = {"1x2": [], "2x1": []}
    for _ in range(args.rounds):  # alternate, so a busy moment on the machine hits both
        runs["1x2"].append(_launch(args, 1))
        runs["2x1"].append(_launch(args, 2))
    result = {"model": f"DCGAN 28x28 width {args.width}", "global_batch": args.batch,
              "sync_bn": args.sync_bn, "steps": args.steps, "rounds": args.rounds,
              "parameters": _parameter_counts(args)}
    for name, label in (("1x2", "1 process x 2 threads"), ("2x1", "2 ranks x 1 thread")):
        step = statistics.median(r["step_s"] for r in runs[name])
        entry = {"what": label, "step_s": round(step, 4),
                 "images_per_s": round(args.batch / step, 1),
                 "step_s_each_round": [round(r["step_s"], 4) for r in runs[name]]}
        if name == "2x1":
            entry["all_reduce_s_per_step"] = round(statistics.median(
                r["all_reduce_s_per_step"] for r in runs[name]), 5)
            entry["gradient_all_reduce_alone_s"] = round(statistics.median(
                r["gradient_all_reduce_alone_s"] for r in runs[name]), 5)
        result[name] = entry
    result["speedup_2x1_over_1x2"] = round(result["1x2"]["step_s"] / result["2x1"]["step_s"], 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
