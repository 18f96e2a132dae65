"""benchmarks.gemm's arithmetic: per-shape rates and the step's rates from the timed calls,
with the clock replaced (each function's fastest call set by hand), so no GEMM runs."""
import pytest

native = pytest.importorskip("needle.backend_ndarray.ndarray_backend_cpu",
                             reason="native cpu backend not built")
gemm = pytest.importorskip("benchmarks.gemm")


def test_step_rates_are_the_step_flop_over_the_summed_seconds(monkeypatch, capsys):
    seconds = {"numpy": 1e-3, "native_baseline": 4e-3, "native_baseline_tiled": 2e-3}

    def fake_fastest_calls(functions, repeat, rounds):
        labels = list(fake_fastest_calls.labels)
        assert len(labels) == len(functions)
        return [seconds[label] for label in labels]

    real_shape_functions = gemm.shape_functions

    def recording_shape_functions(*args):
        functions = real_shape_functions(*args)
        fake_fastest_calls.labels = list(functions)
        return functions

    monkeypatch.setattr(gemm, "fastest_calls", fake_fastest_calls)
    monkeypatch.setattr(gemm, "shape_functions", recording_shape_functions)
    report = gemm.main(["--isa", "baseline", "--no_torch", "--repeat", "1", "--rounds", "1"])
    capsys.readouterr()

    flop = {tuple(shape[:3]): 2 * shape[0] * shape[1] * shape[2] for shape in gemm.DCGAN_SHAPES}
    step_flop = sum(shape[3] * flop[tuple(shape[:3])] for shape in gemm.DCGAN_SHAPES)
    t = native.__tile_size__
    tiled = {tuple(shape[:3]) for shape in gemm.DCGAN_SHAPES
             if all(d % t == 0 for d in shape[:3])}
    assert tiled and len(tiled) < len(gemm.DCGAN_SHAPES)  # both kinds of shape occur
    # a shape that is not a multiple of the tile size counts its flat time in the tiled mix
    tiled_seconds = sum(shape[3] * (seconds["native_baseline_tiled"]
                                    if tuple(shape[:3]) in tiled else seconds["native_baseline"])
                        for shape in gemm.DCGAN_SHAPES)
    counts = sum(shape[3] for shape in gemm.DCGAN_SHAPES)
    assert report["step"] == {
        "numpy_gflops": round(step_flop / (counts * seconds["numpy"]) / 1e9, 1),
        "native_baseline_gflops": round(step_flop / (counts * seconds["native_baseline"]) / 1e9, 1),
        "native_baseline_tiled_gflops": round(step_flop / tiled_seconds / 1e9, 1)}
    for row in report["shapes"]:
        shape = tuple(row["shape"])
        assert row["native_baseline_gflops"] == round(flop[shape] / 4e-3 / 1e9, 1)
        assert ("native_baseline_tiled_gflops" in row) == (shape in tiled)
        assert row["ratio_native_to_numpy"] == round(
            row["native_baseline_gflops"] / row["numpy_gflops"], 3)
