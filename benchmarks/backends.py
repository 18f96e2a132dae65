"""The array backends side by side: cpu() (native C++), cpu_numpy(), cuda(), and PyTorch.

    python -m benchmarks.backends [--repeat 15] [--steps 5] [--clock wall|cpu] [--threads N]

Prints JSON. "ops": for each NDArray operation (elementwise add, mul and exp on 1M floats,
matmul 256 and 512, a sum over each axis of a 1024 x 1024 array, compact() of a permuted
64 x 128 x 128 array), the median milliseconds per call on every device and for PyTorch on
the CPU (and on the GPU when cuda() is enabled), timed interleaved in this one process;
matmul rows add GFLOP/s. cpu() is the course's flat-memory device, so its matmul includes
NDArray's tile / untile copies around matmul_tiled, and its axis-0 sum a permuted compact().
"native_kernels": GFLOP/s of the native module's flat matmul and matmul_tiled alone, beside
the NumPy table's (OpenBLAS). "dcgan": median milliseconds of one D+G training step of the
28x28 DCGAN (gan.models.dcgan, width 64, batch 64, non-saturating loss, Adam) per device, and
of its PyTorch twin (benchmarks.dcgan_vs_torch) on the CPU and, beside cuda(), on the GPU.

Two-thread timings swing when anything else runs on the machine (see "load_average"); for
steadier one-thread figures: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ... --clock cpu (the
native module also reads OMP_NUM_THREADS, or NEEDLE_NUM_THREADS).
"""
import argparse
import json
import os

import numpy as np

from benchmarks.dcgan_vs_torch import LATENT, NeedleDCGAN, TorchDCGAN
from benchmarks.timing import (CLOCKS, gemm_peak_gflops, interleaved_medians, machine,
                               try_import_torch)
from needle import backend_ndarray as nd

BATCH, WIDTH = 64, 64


def devices():
    """(name, device, synchronize) for every device available in this process."""
    cpu = nd.cpu()
    native = not hasattr(cpu.mod, "xp")
    found = [("cpu" if native else "cpu (NumPy fallback: native module not built)", cpu,
              lambda: None), ("cpu_numpy", nd.cpu_numpy(), lambda: None)]
    cuda = nd.cuda()
    if cuda.enabled():
        found.append(("cuda", cuda, cuda.xp.cuda.runtime.deviceSynchronize))
    return found


def torch_targets(torch, cuda_enabled):
    """(name, torch device, synchronize): the CPU, and the GPU where needle has one too."""
    targets = [("torch_cpu", "cpu", lambda: None)]
    if cuda_enabled and torch.cuda.is_available():
        targets.append(("torch_cuda", "cuda", torch.cuda.synchronize))
    return targets


# ---- per-op ---------------------------------------------------------------------------------
def op_cases():
    """name -> (input shapes, needle fn on NDArrays, torch fn on tensors, flops or 0)."""
    square = (1024, 1024)
    return {
        "add_1M": ([square, square], lambda a, b: a + b, lambda a, b: a + b, 0),
        "mul_1M": ([square, square], lambda a, b: a * b, lambda a, b: a * b, 0),
        "exp_1M": ([square], lambda a: a.exp(), lambda a: a.exp(), 0),
        "matmul_256": ([(256, 256), (256, 256)], lambda a, b: a @ b, lambda a, b: a @ b,
                       2 * 256 ** 3),
        "matmul_512": ([(512, 512), (512, 512)], lambda a, b: a @ b, lambda a, b: a @ b,
                       2 * 512 ** 3),
        "sum_axis0_1M": ([square], lambda a: a.sum(axis=0), lambda a: a.sum(0), 0),
        "sum_axis1_1M": ([square], lambda a: a.sum(axis=1), lambda a: a.sum(1), 0),
        "compact_permuted_64x128x128": (
            [(64, 128, 128)], lambda a: a.permute((2, 0, 1)).compact(),
            lambda a: a.permute(2, 0, 1).contiguous(), 0),
    }


def bench_ops(args, torch, clock):
    rows = []
    found = devices()
    targets = torch_targets(torch, any(name == "cuda" for name, _, _ in found)) if torch else []
    for name, (shapes, needle_fn, torch_fn, flops) in op_cases().items():
        rng = np.random.default_rng(0)
        inputs = [rng.uniform(0.5, 1.5, shape).astype(np.float32) for shape in shapes]
        labels, functions = [], []
        for label, device, sync in found:
            arrays = [nd.array(x, device=device) for x in inputs]
            labels.append(label)
            functions.append(lambda f=needle_fn, a=arrays, s=sync: (f(*a), s()))
        for label, where, sync in targets:
            tensors = [torch.from_numpy(x).to(where) for x in inputs]
            labels.append(label)
            functions.append(lambda f=torch_fn, t=tensors, s=sync: (f(*t), s()))
        times = interleaved_medians(functions, repeat=args.repeat, clock=clock)
        row = {"op": name}
        for label, seconds in zip(labels, times):
            row[f"{label}_ms"] = seconds * 1e3
            if flops:
                row[f"{label}_gflops"] = flops / seconds / 1e9
        rows.append(row)
    return rows


def bench_native_kernels(args, clock):
    """The flat-memory matmul kernels alone (no NDArray copies), native vs the NumPy table."""
    native = nd.cpu().mod
    if hasattr(native, "xp"):
        return None
    reference = nd.cpu_numpy().mod
    result = {}
    for n in (256, 512):
        x = np.random.default_rng(n).standard_normal((n, n)).astype(np.float32)
        functions = []
        for mod in (native, reference):
            a, b, out = mod.Array(n * n), mod.Array(n * n), mod.Array(n * n)
            mod.from_numpy(x, a)
            mod.from_numpy(x, b)
            functions += [lambda m=mod, a=a, b=b, o=out: m.matmul(a, b, o, n, n, n),
                          lambda m=mod, a=a, b=b, o=out: m.matmul_tiled(a, b, o, n, n, n)]
        times = interleaved_medians(functions, repeat=args.repeat, clock=clock)
        gflops = [2 * n ** 3 / t / 1e9 for t in times]
        result[f"matmul_{n}"] = {"native_matmul_gflops": gflops[0],
                                 "native_matmul_tiled_gflops": gflops[1],
                                 "numpy_table_matmul_gflops": gflops[2],
                                 "numpy_table_matmul_tiled_gflops": gflops[3]}
    return result


# ---- DCGAN step -------------------------------------------------------------------------------
def bench_dcgan(args, torch, clock):
    rng = np.random.default_rng(1)
    real = rng.uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32)
    z = rng.standard_normal((BATCH, LATENT)).astype(np.float32)
    labels, functions = [], []
    for label, device, sync in devices():
        np.random.seed(0)  # the same initial weights on every device
        model = NeedleDCGAN(WIDTH, device)
        labels.append(label)
        functions.append(lambda m=model, s=sync: (m.step(real, z), s()))
    if torch is not None:
        cuda_enabled = any(name == "cuda" for name, _, _ in devices())
        for label, where, sync in torch_targets(torch, cuda_enabled):
            np.random.seed(0)
            twin = TorchDCGAN(torch, NeedleDCGAN(WIDTH, nd.cpu_numpy()), where)
            labels.append(label)
            functions.append(lambda t=twin, s=sync: (t.step(real, z), s()))
    times = interleaved_medians(functions, repeat=args.steps, warmup=1, clock=clock)
    result = {"batch": BATCH, "width": WIDTH, "steps": args.steps}
    result.update({f"{label}_ms_per_step": t * 1e3 for label, t in zip(labels, times)})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per op")
    parser.add_argument("--steps", type=int, default=5, help="timed DCGAN steps per device")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu = process CPU time (steady on a busy machine, 1 thread)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the native module and PyTorch (default: theirs)")
    parser.add_argument("--no-dcgan", action="store_true", help="skip the DCGAN steps")
    args = parser.parse_args(argv)
    torch = try_import_torch()
    native = nd.cpu().mod
    is_native = not hasattr(native, "xp")
    if args.threads:
        if is_native:
            native.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    load_before = os.getloadavg()
    result = {
        "benchmark": "backends", "machine": machine(), "clock": args.clock,
        "torch": None if torch is None else torch.__version__,
        "devices": [label for label, _, _ in devices()],
        "native": {"built": is_native,
                   "threads": native.num_threads() if is_native else None,
                   "avx2_fma_kernels": bool(native.__avx2__) if is_native else None},
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "gemm_peak_gflops_numpy": gemm_peak_gflops(),
        "ops": bench_ops(args, torch, clock),
        "native_kernels": bench_native_kernels(args, clock),
    }
    if not args.no_dcgan:
        result["dcgan"] = bench_dcgan(args, torch, clock)
    result["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
