"""Per-op forward and forward+backward: needle vs PyTorch, float32, in one run.

    python -m benchmarks.ops [--device cpu_numpy|cpu] [--repeat 15] [--budget 3]
                             [--tiny-loops 2000] [--clock wall|cpu]

Prints JSON: for each op (elementwise on 1M floats, matmul, summation, broadcast_to,
logsumexp, an MLP training step), median milliseconds of the forward pass and of
forward+backward for needle and PyTorch, and their ratio (needle / torch, < 1 is faster).
Both sides backpropagate the same precomputed upstream gradient and take the inputs'
gradients with the functional API (`ndl.grad`, `torch.autograd.grad`), so both do the same
arithmetic: `.backward()` would have PyTorch clone a gradient that reaches two leaves (add's)
or that is a broadcast view (summation's) before storing it in `.grad`, where needle stores
the array it has. A tanh row and the MLP row (which steps through `.backward()` in both) also
time the course default `create_graph=True`, to show what differentiable gradients cost.
"overhead" gives the per-call Python overhead in microseconds: add on (2, 2) tensors,
forward+backward and forward only. Runs in about half a minute on the default settings
(--device cpu, whose flat-memory matmul is slow, about two minutes).

Two-thread timings swing when anything else runs on the machine ("load_average_before_after"
is reported). For steadier one-thread figures on a busy machine, count CPU time:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.ops --clock cpu
"""
import argparse
import json
import os
import time

import numpy as np

import needle as ndl
from benchmarks.timing import CLOCKS, gemm_peak_gflops, interleaved_medians, machine, try_import_torch

N_ELEMENTWISE = 1 << 20
SLOPE = 0.01
LEARNING_RATE = 0.1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# ---- the ops: (name, input shapes, needle function, torch function, positive inputs) ---------
def op_cases(torch):
    """Each case maps input Tensors to one output Tensor, in needle and in PyTorch."""
    F = torch.nn.functional if torch is not None else None
    vector = (N_ELEMENTWISE,)
    square = (1000, 1000)
    cases = [
        ("add", [vector, vector], lambda a, b: a + b, lambda a, b: a + b, False),
        ("multiply", [vector, vector], lambda a, b: a * b, lambda a, b: a * b, False),
        ("divide", [vector, vector], lambda a, b: a / b, lambda a, b: a / b, True),
        ("power_scalar(3)", [vector], lambda a: a ** 3, lambda a: a ** 3, False),
        ("exp", [vector], ndl.exp, lambda a: a.exp(), False),
        ("log", [vector], ndl.log, lambda a: a.log(), True),
        ("tanh", [vector], ndl.tanh, lambda a: a.tanh(), False),
        ("relu", [vector], ndl.relu, lambda a: a.relu(), False),
        ("sigmoid", [vector], ndl.sigmoid, lambda a: a.sigmoid(), False),
        ("leaky_relu", [vector], lambda a: ndl.leaky_relu(a, SLOPE),
         lambda a: F.leaky_relu(a, SLOPE), False),
        ("softplus", [vector], ndl.softplus, lambda a: F.softplus(a), False),
    ]
    for n in (512, 1024):
        cases.append((f"matmul {n}", [(n, n), (n, n)], ndl.matmul, lambda a, b: a @ b, False))
    for axes in (None, 0, 1):
        cases.append((f"summation axes={axes}", [square], _summation(axes),
                      _torch_sum(axes), False))
    cases.append(("broadcast_to (1000,1)->(1000,1000)", [(1000, 1)],
                  lambda a: ndl.broadcast_to(a, square), lambda a: a.expand(*square), False))
    cases.append(("logsumexp axes=1", [square], lambda a: ndl.logsumexp(a, (1,)),
                  lambda a: torch.logsumexp(a, 1), False))
    return cases


def _summation(axes):
    return lambda a: ndl.summation(a, axes)


def _torch_sum(axes):
    return lambda a: a.sum() if axes is None else a.sum(axes)


def random_inputs(shapes, positive):
    arrays = [np.random.randn(*shape).astype(np.float32) for shape in shapes]
    return [np.abs(a) + 0.5 for a in arrays] if positive else arrays


# ---- timing one op --------------------------------------------------------------------------
def needle_functions(fn, arrays, device, create_graph=False):
    """(forward, forward+backward) closures over needle Tensors on `device`."""
    xs = [ndl.Tensor(a, device=device, requires_grad=True) for a in arrays]
    out_shape = fn(*xs).shape
    seed = ndl.Tensor(np.ones(out_shape, np.float32), device=device, requires_grad=False)

    def forward():
        with ndl.no_grad():
            fn(*xs)

    def step():
        ndl.grad([fn(*xs)], xs, [seed], create_graph=create_graph)

    return forward, step


def torch_functions(torch, fn, arrays):
    """(forward, forward+backward) closures over PyTorch tensors."""
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    seed = torch.ones(fn(*xs).shape)

    def forward():
        with torch.no_grad():
            fn(*xs)

    def step():
        torch.autograd.grad([fn(*xs)], xs, [seed])

    return forward, step


def bench_op(torch, case, device, settings, create_graph=False):
    name, shapes, needle_fn, torch_fn, positive = case
    arrays = random_inputs(shapes, positive)
    functions = list(needle_functions(needle_fn, arrays, device, create_graph))
    if torch is not None:
        functions += torch_functions(torch, torch_fn, arrays)
    return timing_row(name, shapes, timed(functions, settings))


def timed(functions, settings):
    """interleaved_medians with the repeat cut so one case takes about `--budget` seconds.

    The first call of each function (timed here) is also the first warmup call; at least
    3 samples are always taken (the slow flat-memory matmul on --device cpu needs the cut).
    """
    start = time.perf_counter()
    for fn in functions:
        fn()
    round_seconds = time.perf_counter() - start
    repeat = max(3, min(settings.repeat, int(settings.budget / max(round_seconds, 1e-9)) - 1))
    return interleaved_medians(functions, repeat=repeat, warmup=1, clock=CLOCKS[settings.clock])


def timing_row(name, shapes, times):
    row = {"op": name, "shapes": ", ".join(str(tuple(s)) for s in shapes),
           "needle_forward_ms": times[0] * 1e3, "needle_fwd_bwd_ms": times[1] * 1e3}
    if len(times) == 4:
        row.update({"torch_forward_ms": times[2] * 1e3, "torch_fwd_bwd_ms": times[3] * 1e3,
                    "ratio_forward": times[0] / times[2], "ratio_fwd_bwd": times[1] / times[3]})
    return row


def add_matmul_rates(row, peak):
    """GFLOP/s of needle's matmul forward+backward (3 GEMMs) and its share of the peak."""
    n = int(row["op"].split()[-1])
    gflops = 3 * 2 * n ** 3 / (row["needle_fwd_bwd_ms"] / 1e3) / 1e9
    row["needle_fwd_bwd_gflops"] = gflops
    row["needle_share_of_gemm_peak"] = gflops / peak


# ---- the MLP training step ------------------------------------------------------------------
def needle_mlp_step(device, x_np, y_np, create_graph=False):
    """784-256-10 MLP, SoftmaxLoss (logsumexp), SGD through `.data`; returns (step, model)."""
    nn = ndl.nn
    model = nn.Sequential(nn.Linear(784, 256, device=device), nn.ReLU(),
                          nn.Linear(256, 10, device=device))
    loss_fn = nn.SoftmaxLoss()
    x = ndl.Tensor(x_np, device=device, requires_grad=False)
    y = ndl.Tensor(y_np, device=device, requires_grad=False)
    params = model.parameters()

    def step():
        loss_fn(model(x), y).backward(create_graph=create_graph)
        for p in params:
            p.data = p.data - LEARNING_RATE * p.grad.data

    return step, model


def torch_mlp_step(torch, needle_model, x_np, y_np):
    """The same model (same initial weights), loss formula and update in PyTorch."""
    first, _, last = needle_model.modules
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    with torch.no_grad():
        for t_layer, n_layer in ((model[0], first), (model[2], last)):
            t_layer.weight.copy_(torch.tensor(n_layer.weight.numpy().T))
            t_layer.bias.copy_(torch.tensor(n_layer.bias.numpy().reshape(-1)))
    x = torch.tensor(x_np)
    one_hot = torch.nn.functional.one_hot(torch.tensor(y_np), 10).float()
    params = list(model.parameters())

    def step():
        logits = model(x)
        loss = (torch.logsumexp(logits, 1) - (logits * one_hot).sum(1)).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LEARNING_RATE * p.grad
                p.grad = None

    return step


def bench_mlp(torch, device, settings, batch=128):
    """The step with create_graph=False, and with the course default True, beside torch's."""
    x_np = np.random.randn(batch, 784).astype(np.float32)
    y_np = np.random.randint(0, 10, size=batch)
    step, model = needle_mlp_step(device, x_np, y_np)
    step_graph, _ = needle_mlp_step(device, x_np, y_np, create_graph=True)
    functions = [step, step_graph]
    if torch is not None:
        functions.append(torch_mlp_step(torch, model, x_np, y_np))
    times = timed(functions, settings)
    row = {"op": f"MLP 784-256-10 SGD step, batch {batch}", "needle_step_ms": times[0] * 1e3,
           "needle_step_create_graph_ms": times[1] * 1e3}
    if torch is not None:
        row.update({"torch_step_ms": times[2] * 1e3, "ratio": times[0] / times[2],
                    "ratio_create_graph": times[1] / times[2]})
    return row


# ---- per-call overhead on tiny tensors ------------------------------------------------------
def looped(fn, loops):
    def run():
        for _ in range(loops):
            fn()
    return run


def bench_overhead(torch, device, settings):
    """Microseconds per add on (2, 2) tensors: forward+backward and forward only."""
    loops = settings.tiny_loops
    arrays = random_inputs([(2, 2), (2, 2)], False)
    add = lambda a, b: a + b  # noqa: E731
    n_forward = needle_forward_with_graph(arrays, device)
    n_step = needle_functions(add, arrays, device)[1]
    functions = [looped(n_step, loops), looped(n_forward, loops)]
    if torch is not None:
        t_xs = [torch.tensor(a, requires_grad=True) for a in arrays]
        t_step = torch_functions(torch, add, arrays)[1]
        functions += [looped(t_step, loops), looped(lambda: t_xs[0] + t_xs[1], loops)]
    times = interleaved_medians(functions, repeat=settings.repeat, clock=CLOCKS[settings.clock])
    times = [t / loops * 1e6 for t in times]
    result = {"shape": [2, 2], "loops_per_sample": loops,
              "needle_add_fwd_bwd_us": times[0], "needle_add_forward_us": times[1]}
    if torch is not None:
        result.update({"torch_add_fwd_bwd_us": times[2], "torch_add_forward_us": times[3],
                       "ratio_fwd_bwd": times[0] / times[2], "ratio_forward": times[1] / times[3]})
    return result


def needle_forward_with_graph(arrays, device):
    """Forward of add with grad-requiring inputs: the graph-recording cost of training."""
    a, b = [ndl.Tensor(x, device=device, requires_grad=True) for x in arrays]
    return lambda: a + b


# ---- main -----------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=["cpu_numpy", "cpu"], default="cpu_numpy")
    parser.add_argument("--repeat", type=int, default=15, help="timed samples per function")
    parser.add_argument("--budget", type=float, default=3.0,
                        help="seconds per case; fewer samples (at least 3) for slow cases")
    parser.add_argument("--tiny-loops", type=int, default=2000,
                        help="calls per timed sample of the (2, 2) overhead measurement")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: this process's CPU time, steadier on a busy machine but "
                             "only meaningful with one thread (see above)")
    args = parser.parse_args(argv)
    device = getattr(ndl, args.device)()
    torch = try_import_torch()
    np.random.seed(0)
    if torch is not None:
        torch.manual_seed(0)
    start = time.perf_counter()
    peak = gemm_peak_gflops(clock=CLOCKS[args.clock])
    load_before = os.getloadavg()
    rows = []
    for case in op_cases(torch):
        rows.append(bench_op(torch, case, device, args))
        if case[0].startswith("matmul"):
            add_matmul_rates(rows[-1], peak)
        if case[0] == "tanh":
            rows.append(bench_op(torch, case, device, args, create_graph=True))
            rows[-1]["op"] = "tanh (create_graph=True)"
    rows.append(bench_mlp(torch, device, args))
    overhead = bench_overhead(torch, device, args)
    print(json.dumps({"benchmark": "ops", "device": args.device, "machine": machine(),
                      "torch": None if torch is None else torch.__version__,
                      "torch_threads": None if torch is None else torch.get_num_threads(),
                      "thread_env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
                      # Other processes on a 2-core machine skew two-thread timings badly.
                      "load_average_before_after": [load_before[0], os.getloadavg()[0]],
                      "clock": args.clock, "repeat": args.repeat, "gemm_peak_gflops": peak,
                      "results": rows,
                      "overhead": overhead,
                      "wall_seconds": time.perf_counter() - start}, indent=1))


if __name__ == "__main__":
    main()
