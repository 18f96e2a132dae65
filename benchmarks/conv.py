"""DCGAN layer shapes: needle vs PyTorch, forward and forward+backward, in one run.

    python -m benchmarks.conv [--batch 64 128] [--repeat 7] [--clock wall|cpu]

Prints JSON: per layer and batch size, median milliseconds for needle and PyTorch, their
ratio (needle / torch, < 1 is faster), and needle's achieved GFLOP/s as a share of this
machine's float32 GEMM peak (measured here with a large np.matmul).

Both do the same work: the forward pass alone, no copy to NumPy; forward+backward from the
same precomputed upstream gradient (ones), into the input and the parameters, with every
`.grad` cleared before each PyTorch step (PyTorch would otherwise add each step's gradients
to the last; needle's backward overwrites `.grad`).
"""
import argparse
import json

import numpy as np

import needle as ndl
from benchmarks.timing import (CLOCKS, gemm_peak_gflops, interleaved_medians, machine,
                               try_import_torch)

LAYERS = [
    # name, kind, in_channels, out_channels, input size, output size
    ("Conv2d 1->64 28->14", "conv", 1, 64, 28, 14),
    ("Conv2d 64->128 14->7", "conv", 64, 128, 14, 7),
    ("ConvTranspose2d 128->64 7->14", "convT", 128, 64, 7, 14),
    ("ConvTranspose2d 64->1 14->28", "convT", 64, 1, 14, 28),
    ("BatchNorm2d 128 7x7", "bn", 128, 128, 7, 7),
]


def conv_flops(kind, batch, c_in, c_out, size_in, size_out, kernel=4):
    """Multiply-adds x 2 of the forward pass (backward is about twice this)."""
    if kind == "conv":
        return 2 * batch * size_out * size_out * c_out * c_in * kernel * kernel
    if kind == "convT":
        return 2 * batch * size_in * size_in * c_in * c_out * kernel * kernel
    return 0


def needle_layer(kind, c_in, c_out):
    if kind == "conv":
        return ndl.nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
    if kind == "convT":
        return ndl.nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    return ndl.nn.BatchNorm2d(c_in)


def torch_layer(torch, kind, c_in, c_out):
    if kind == "conv":
        return torch.nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)
    if kind == "convT":
        return torch.nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)
    return torch.nn.BatchNorm2d(c_in)


def bench_layer(torch, name, kind, c_in, c_out, size_in, size_out, batch, repeat, peak, clock):
    x_np = np.random.randn(batch, c_in, size_in, size_in).astype(np.float32)
    layer = needle_layer(kind, c_in, c_out)
    x = ndl.Tensor(x_np, requires_grad=True)
    with ndl.no_grad():
        out_shape = layer(x).shape
    seed = ndl.Tensor(np.ones(out_shape, np.float32), requires_grad=False)

    def needle_forward():
        with ndl.no_grad():
            layer(x)

    def needle_step():
        layer(x).backward(seed, create_graph=False)

    functions = [needle_forward, needle_step]
    if torch is not None:
        t_layer = torch_layer(torch, kind, c_in, c_out)
        t_x = torch.tensor(x_np, requires_grad=True)
        t_seed = torch.ones(out_shape)
        leaves = [t_x] + list(t_layer.parameters())

        def torch_forward():
            with torch.no_grad():
                t_layer(t_x)

        def torch_step():
            for leaf in leaves:
                leaf.grad = None
            t_layer(t_x).backward(t_seed)

        functions += [torch_forward, torch_step]
    times = interleaved_medians(functions, repeat=repeat, clock=clock)
    flops = conv_flops(kind, batch, c_in, c_out, size_in, size_out)
    result = {"layer": name, "batch": batch,
              "needle_forward_ms": times[0] * 1e3, "needle_fwd_bwd_ms": times[1] * 1e3}
    if flops:
        result["needle_fwd_bwd_gflops"] = 3 * flops / times[1] / 1e9
        result["needle_share_of_gemm_peak"] = result["needle_fwd_bwd_gflops"] / peak
    if torch is not None:
        result.update({"torch_forward_ms": times[2] * 1e3, "torch_fwd_bwd_ms": times[3] * 1e3,
                       "ratio_forward": times[0] / times[2],
                       "ratio_fwd_bwd": times[1] / times[3]})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="cpu: process CPU time; use with one thread on a busy machine")
    args = parser.parse_args(argv)
    torch = try_import_torch()
    np.random.seed(0)
    peak = gemm_peak_gflops(clock=CLOCKS[args.clock])
    rows = [bench_layer(torch, *layer, batch=batch, repeat=args.repeat, peak=peak,
                        clock=CLOCKS[args.clock])
            for batch in args.batch for layer in LAYERS]
    print(json.dumps({"benchmark": "conv", "machine": machine(),
                      "torch": None if torch is None else torch.__version__,
                      "gemm_peak_gflops": peak, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
