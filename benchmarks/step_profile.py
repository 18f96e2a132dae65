"""Where the DCGAN training step's time goes: GEMM, elementwise, im2col/col2im, copies, Python.

    python -m benchmarks.step_profile                         # cpu_numpy, beside PyTorch
    python -m benchmarks.step_profile --device cpu_numpy cpu  # the native device too
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m benchmarks.step_profile  # one thread

The step is benchmarks.dcgan_vs_torch's (the main job's classic recipe at batch 64: one D
step and one G step with Adam and the logged figures), on the same batches and initial
weights as PyTorch's twin. Two passes per device:

1. Timing: needle's step and PyTorch's alternate in this process, --steps each after two
   warm-up steps; medians (the figure the README's tables use).
2. Profile: --steps more needle steps with timers around the backend's work, each timer
   counting its own time only (time in a nested timer goes to the nested one's category):
     gemm         NDArray @ (every matrix product: linear layers and the convolutions' GEMMs),
                  with the GFLOP it did and its rate
     im2col       the convolutions' gathers (im2col) and scatter-adds (col2im), copies and
                  adds made inside them included
     copies       NDArray.compact outside im2col/col2im (layout changes, contiguous copies)
     elementwise  every other op's compute (elementwise, reductions, shape ops) and the
                  optimizer's update arithmetic (NDArray ops inside Optimizer.step)
     python       the rest of the step: graph building, autograd's walk, module calls
   The profiled step is a little slower than the timed one (two clock reads per timed call);
   the shares are of the profiled step.

Prints JSON: per device the timed medians and ratio to PyTorch, the profile's milliseconds
and shares per category, GEMM GFLOP per step and GFLOP/s, and the calls counted.
"""
import argparse
import collections
import functools
import importlib
import pkgutil
import json
import statistics
import time

import numpy as np

import needle as ndl
from benchmarks.dcgan_vs_torch import NeedleDCGAN, TorchDCGAN, batches, mnist
from benchmarks.timing import interleaved_medians, machine, try_import_torch
from needle.autograd import Op
from needle.backend_ndarray.ndarray import NDArray

CONV = importlib.import_module("needle.ops.conv")
CATEGORIES = ("gemm", "im2col", "copies", "elementwise", "python")
DEVICES = {"cpu_numpy": ndl.cpu_numpy, "cpu": ndl.cpu}


class StepProfiler:
    """Exclusive timers around backend calls, grouped into CATEGORIES.

    A call inside an im2col/col2im call counts as im2col, whatever it is; every other nested
    call takes its time out of its caller's.
    """

    def __init__(self):
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self.gemm_flop = 0
        self._stack = []  # [category, time spent in nested timers]
        self._patched = []

    def timed(self, category, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if self._stack and self._stack[-1][0] == "im2col":
                return fn(*args, **kwargs)
            frame = [category, 0.0]
            self._stack.append(frame)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self._stack.pop()
                self.seconds[category] += elapsed - frame[1]
                self.calls[category] += 1
                if self._stack:
                    self._stack[-1][1] += elapsed
        return wrapper

    def _patch(self, owner, name, category, fn=None):
        original = owner.__dict__[name]
        self._patched.append((owner, name, original))
        setattr(owner, name, self.timed(category, fn or original))

    def __enter__(self):
        profiler = self

        def matmul(a, b):
            m, k = a.shape[-2], a.shape[-1]
            profiler.gemm_flop += 2 * m * k * b.shape[-1] * int(np.prod(a.shape[:-2]))
            return original_matmul(a, b)

        original_matmul = NDArray.__matmul__
        self._patch(NDArray, "__matmul__", "gemm", matmul)
        self._patch(NDArray, "compact", "copies")
        self._patch(CONV._ConvGeometry, "im2col", "im2col")
        self._patch(CONV._ConvGeometry, "col2im", "im2col")
        for op_class in _op_classes():
            self._patch(op_class, "compute", "elementwise")
        for optimizer in (ndl.optim.Adam,):
            self._patch(optimizer, "step", "elementwise")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()

    def report(self, total_seconds, steps):
        measured = sum(self.seconds.values())
        split = dict(self.seconds, python=max(total_seconds - measured, 0.0))
        ms = {c: 1e3 * split.get(c, 0.0) / steps for c in CATEGORIES}
        gemm_seconds = self.seconds["gemm"]
        return {"ms_per_step": 1e3 * total_seconds / steps,
                "ms": {c: round(v, 2) for c, v in ms.items()},
                "share": {c: round(v / (1e3 * total_seconds / steps), 3) for c, v in ms.items()},
                "gemm_gflop_per_step": round(self.gemm_flop / steps / 1e9, 2),
                "gemm_gflops": round(self.gemm_flop / gemm_seconds / 1e9, 1)
                if gemm_seconds else None,
                "calls_per_step": {c: self.calls[c] // steps for c in CATEGORIES
                                   if c in self.calls}}


def _op_classes():
    """Every op class of needle.ops with its own compute (the conv ops included: their
    compute's own time, beyond GEMM and im2col, is elementwise work such as transposes)."""
    seen = []
    package = importlib.import_module("needle.ops")
    for info in pkgutil.iter_modules(package.__path__):
        for value in vars(importlib.import_module(f"needle.ops.{info.name}")).values():
            if (isinstance(value, type) and issubclass(value, Op) and "compute" in vars(value)
                    and value not in seen):
                seen.append(value)
    return seen


def profile_device(device_name, args, torch):
    images = mnist(train=False)
    # warm-up, settle + timed per repeat, then the profiled steps
    feed = list(batches(images, args.batch, 3 * args.steps + 4, args.seed))
    np.random.seed(args.seed)
    model = NeedleDCGAN(args.width, DEVICES[device_name]())
    models = [model]
    if torch is not None:
        np.random.seed(args.seed)
        models.append(TorchDCGAN(torch, NeedleDCGAN(args.width, ndl.cpu_numpy())))
    cursors = [iter(feed) for _ in models]
    medians = interleaved_medians([functools.partial(lambda m, c: m.step(*next(c)), m, c)
                                   for m, c in zip(models, cursors)],
                                  repeat=args.steps, warmup=2)
    result = {"device": device_name, "needle_ms_per_step": round(medians[0] * 1e3, 1)}
    if torch is not None:
        result.update({"torch_ms_per_step": round(medians[1] * 1e3, 1),
                       "ratio_step_time": round(medians[0] / medians[1], 3)})
    rest = cursors[0]
    step_times = []
    with StepProfiler() as profiler:
        for _ in range(args.steps):
            start = time.perf_counter()
            model.step(*next(rest))
            step_times.append(time.perf_counter() - start)
    result["profile"] = profiler.report(sum(step_times), args.steps)
    result["profile"]["median_ms_per_step"] = round(1e3 * statistics.median(step_times), 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_profile",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--device", nargs="+", choices=sorted(DEVICES), default=["cpu_numpy"],
                        help="needle devices profiled (default: cpu_numpy)")
    parser.add_argument("--steps", type=int, default=10,
                        help="timed steps per framework, then as many profiled (default: 10)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_torch", action="store_true", help="needle alone")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.width < 1:
        parser.error("--steps, --batch and --width must be >= 1")
    torch = None if args.no_torch else try_import_torch()
    report = {"benchmark": "step_profile", "machine": machine(), "batch": args.batch,
              "width": args.width, "torch": None if torch is None else torch.__version__,
              "devices": [profile_device(name, args, torch) for name in args.device]}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
