"""GEMM GFLOP/s of the native cpu() module, per variant, beside NumPy's BLAS and PyTorch.

    python -m benchmarks.gemm [--repeat 5] [--rounds 3] [--threads N] [--isa avx512 avx2] [--dtype float64]
    OPENBLAS_CORETYPE=Cooperlake python -m benchmarks.gemm   # NumPy on OpenBLAS's AVX-512

The shapes are the DCGAN step's GEMMs (batch 64, width 64: the 18 GFLOP per step that
benchmarks.step_profile counts), (m, n, p) for (m x n) @ (n x p), each with how many times
it runs in one step. For each shape: the native module's flat matmul (what cpu()'s NDArray
runs, through matmul_strided, which packs compact operands as matmul does) and its
matmul_tiled (the course's 8x8 tiles, hw3's kernel, without tile/untile copies) under every
GEMM variant this CPU runs (set_gemm_isa: avx512, avx2, baseline), NumPy's a @ b and
PyTorch's torch.mm, all in this one process.
Each function is timed in a block of its own (after a pause, two untimed calls, then --repeat
timed ones), --rounds times over all the functions in turn, and the fastest call is reported,
as benchmarks.timing.gemm_peak_gflops does (other load on the machine only slows a call down;
block medians were measured at half speed now and then on this VM). Not alternating call by
call as benchmarks.timing.interleaved_medians does: OpenBLAS's
and PyTorch's worker threads spin for about 0.1 s after a call, and on a 2-core machine a
GEMM of a few milliseconds timed in that window runs on one core (measured: the native
module's 2-thread rate fell to its 1-thread one, ~210 GFLOP/s, right after NumPy's calls).

Prints JSON: per shape the GFLOP/s of each and the widest variant's ratios to NumPy; "step"
gives the same per-step figures over all shapes, weighted by their counts (the step's GEMM
flop over the summed times). Timings swing when anything else runs on the machine.
"""
import argparse
import json
import time

import numpy as np

from benchmarks.timing import machine, try_import_torch

# (m, n, p, times per DCGAN step); the step's three matrix-vector products (p = 1, 5 MFLOP
# in all) are left out
DCGAN_SHAPES = [
    (3136, 256, 2048, 1), (3136, 2048, 256, 1), (2048, 3136, 256, 1),
    (3136, 1024, 128, 3), (3136, 128, 1024, 3), (1024, 3136, 128, 3),
    (12544, 128, 16, 1), (12544, 16, 64, 3), (16, 12544, 64, 3), (12544, 64, 16, 1),
    (12544, 16, 128, 1), (16, 12544, 128, 1), (64, 100, 12544, 1), (12544, 64, 100, 1),
]
VARIANTS = ("avx512", "avx2", "baseline")
PAUSE_S = 0.2  # longer than other libraries' workers spin after their last call


def fastest_calls(functions, repeat, rounds):
    """Seconds of each function's fastest call, over `rounds` blocks of `repeat` calls of its
    own (the rounds run over all the functions in turn)."""
    best = [float("inf")] * len(functions)
    for _ in range(rounds):
        for index, fn in enumerate(functions):
            time.sleep(PAUSE_S)
            fn()
            fn()
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                best[index] = min(best[index], time.perf_counter() - start)
    return best


def available_variants(native):
    """The variants to time; [None] (its one GEMM, labelled native) for a module built before
    set_gemm_isa existed, to time an older build beside a newer one."""
    if not hasattr(native, "set_gemm_isa"):
        return [None]
    flags = {"avx512": getattr(native, "__avx512__", False),
             "avx2": native.__avx2__, "baseline": True}
    return [name for name in VARIANTS if flags[name]]


def native_label(isa):
    return f"native_{isa}" if isa else "native"


def to_tiles(x, t):
    rows, cols = x.shape
    return np.ascontiguousarray(x.reshape(rows // t, t, cols // t, t).transpose(0, 2, 1, 3))


def shape_functions(native, variants, torch, m, n, p, dtype, rng):
    """label -> function computing the product once."""
    a = rng.standard_normal((m, n)).astype(dtype)
    b = rng.standard_normal((n, p)).astype(dtype)
    t = native.__tile_size__
    tiled = m % t == 0 and n % t == 0 and p % t == 0

    def put(x):
        buffer = native.Array(x.size, dtype)
        native.from_numpy(x, buffer)
        return buffer

    flat_a, flat_b, out = put(a), put(b), native.Array(m * p, dtype)
    tiles_a, tiles_b = (put(to_tiles(a, t)), put(to_tiles(b, t))) if tiled else (None, None)
    functions = {"numpy": lambda: a @ b}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        functions["torch"] = lambda: torch.mm(ta, tb)
    for isa in variants:
        def flat(isa=isa):
            if isa:
                native.set_gemm_isa(isa)
            native.matmul(flat_a, flat_b, out, m, n, p)
        functions[native_label(isa)] = flat
        if tiled:
            def tiles(isa=isa):
                if isa:
                    native.set_gemm_isa(isa)
                native.matmul_tiled(tiles_a, tiles_b, out, m, n, p)
            functions[native_label(isa) + "_tiled"] = tiles
    return functions


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gemm",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per block")
    parser.add_argument("--rounds", type=int, default=3, help="blocks per function")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the native module, NumPy's BLAS and PyTorch "
                             "(default: each one's own)")
    parser.add_argument("--isa", nargs="+", choices=VARIANTS, default=None,
                        help="native variants timed (default: every one this CPU runs)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--no_torch", action="store_true")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeat, --rounds and --threads must be >= 1")
    from needle.backend_ndarray import ndarray_backend_cpu as native  # needs the built module
    variants = available_variants(native)
    if args.isa and variants != [None]:
        missing = sorted(set(args.isa) - set(variants))
        if missing:
            parser.error(f"this CPU (or build) runs no {', '.join(missing)}")
        variants = [v for v in VARIANTS if v in args.isa]
    torch = None if args.no_torch else try_import_torch()
    limits = None
    if args.threads:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(args.threads, user_api="blas")
        native.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    chosen = native.gemm_isa() if variants != [None] else None
    rng = np.random.default_rng(0)
    rows, step_seconds, step_flop = [], {}, 0
    try:
        for m, n, p, count in DCGAN_SHAPES:
            functions = shape_functions(native, variants, torch, m, n, p, args.dtype, rng)
            times = fastest_calls(list(functions.values()), args.repeat, args.rounds)
            flop = 2 * m * n * p
            row = {"shape": [m, n, p], "per_step": count, "gflop": round(flop / 1e9, 4)}
            seconds_of = dict(zip(functions, times))
            for variant in map(native_label, variants):
                # a shape that is not a multiple of the tile size runs flat in the tiled mix
                seconds_of.setdefault(variant + "_tiled", seconds_of[variant])
            for label, seconds in seconds_of.items():
                if label in functions:
                    row[f"{label}_gflops"] = round(flop / seconds / 1e9, 1)
                step_seconds[label] = step_seconds.get(label, 0.0) + count * seconds
            widest = native_label(variants[0])
            row["ratio_native_to_numpy"] = round(row[f"{widest}_gflops"] / row["numpy_gflops"], 3)
            if f"{widest}_tiled_gflops" in row:
                row["ratio_native_tiled_to_numpy"] = round(
                    row[f"{widest}_tiled_gflops"] / row["numpy_gflops"], 3)
            rows.append(row)
            step_flop += count * flop
    finally:
        if chosen:
            native.set_gemm_isa(chosen)
        if limits is not None:
            limits.restore_original_limits()
    step = {f"{label}_gflops": round(step_flop / seconds / 1e9, 1)
            for label, seconds in step_seconds.items()}
    report = {"benchmark": "gemm", "machine": machine(), "dtype": args.dtype,
              "threads": args.threads, "native_threads": native.num_threads(),
              "native_default_variant": chosen, "variants": variants,
              "torch": None if torch is None else torch.__version__,
              "step_gflop": round(step_flop / 1e9, 2), "step": step, "shapes": rows}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
