"""benchmarks.mode_collapse: a few steps of each part through gan.Trainer, the JSON it
prints, its summaries against hand-computed ones, and the protocol's 2-D networks."""
import json
import math

import numpy as np
import pytest

import needle as ndl
from benchmarks import mode_collapse
from benchmarks.mode_collapse import Maxout, ProtocolDiscriminator, ProtocolGenerator
from needle import nn


def _run(capsys, *argv):
    result = mode_collapse.main(list(argv))
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    return printed


def test_tiny_2d_run_prints_the_keys(capsys, tmp_path):
    printed = _run(capsys, "--only", "ring", "grid", "--methods", "gan", "pacgan2", "wgan_gp",
                   "--seeds", "2", "--steps", "5", "--eval_samples", "200",
                   "--out", str(tmp_path))
    assert {"benchmark", "machine", "threads", "command", "protocol", "ring", "grid"} <= \
        set(printed) and "stacked" not in printed
    for part, n_modes in (("ring", 8), ("grid", 25)):
        report = printed[part]
        assert {"steps", "seeds", "lr_scale", "lr_decay", "eval_samples", "protocol_steps",
                "methods", "published", "aims", "aims_met", "seconds"} <= set(report)
        assert report["steps"] == 5 and report["seeds"] == 2 and report["eval_samples"] == 200
        assert set(report["methods"]) == {"gan", "pacgan2", "wgan_gp"}
        for method, summary in report["methods"].items():
            assert set(summary) == {"modes_covered", "high_quality", "runs"}
            assert [run["seed"] for run in summary["runs"]] == [0, 1]
            for run in summary["runs"]:
                assert 0 <= run["modes_covered"] <= n_modes and 0 <= run["high_quality"] <= 1
                assert run["steps"] == 5
                assert run["g_steps"] == (1 if method == "wgan_gp" else 5)
            assert summary["modes_covered"]["se"] is not None
        assert set(report["published"]) >= {"gan", "wgan_gp", "pacgan2"}
        assert set(report["aims_met"]) == {"gan", "pacgan2", "wgan_gp"}
    # each run trained in its own run folder through the engine
    assert (tmp_path / "ring" / "pacgan2" / "seed1" / "run.json").exists()


def test_tiny_stacked_run_prints_the_keys(capsys, tmp_path):
    printed = _run(capsys, "--only", "stacked", "--seeds", "1", "--steps", "2",
                   "--eval_samples", "40", "--train_count", "256", "--out", str(tmp_path))
    report = printed["stacked"]
    assert set(report["methods"]) == {"dcgan", "pacdcgan2"}
    for summary in report["methods"].values():
        assert set(summary) == {"modes_covered", "kl_to_uniform", "runs"}
        (run,) = summary["runs"]
        assert run["steps"] == 2 and 1 <= run["modes_covered"] <= 40
        assert 0 <= run["kl_to_uniform"] <= math.log(1000)
        assert summary["modes_covered"]["se"] is None  # one seed
    assert report["real_data"]["samples"] == 40 and report["train_count"] == 256
    assert report["published"]["pacdcgan2"]["modes_covered"] == 1000.0


def test_methods_must_fit_the_parts(capsys):
    with pytest.raises(SystemExit, match="--methods dcgan do not apply to ring"):
        mode_collapse.main(["--only", "ring", "--methods", "dcgan"])


def test_mean_and_standard_error():
    summary = mode_collapse.mean_and_se([8, 7, 8, 6])
    assert summary["mean"] == 7.25
    assert summary["se"] == pytest.approx(math.sqrt(((0.75 ** 2) * 2 + 0.25 ** 2 + 1.25 ** 2)
                                                    / 3 / 4))
    assert mode_collapse.mean_and_se([3])["se"] is None
    methods = {"a": {"modes_covered": {"mean": 8.0}, "high_quality": {"mean": 0.96}},
               "b": {"modes_covered": {"mean": 8.0}, "high_quality": {"mean": 0.94}}}
    assert mode_collapse.aims_met("ring", methods) == {"a": True, "b": False}


def test_maxout_is_the_largest_piece():
    np.random.seed(0)
    layer = Maxout(3, units=4, pieces=5)
    x = np.random.randn(6, 3).astype(np.float32)
    w = layer.linear.weight.numpy()
    b = layer.linear.bias.numpy()
    pieces = (x @ w + b).reshape(6, 5, 4)  # pieces of unit j: outputs j, 4 + j, ..., 16 + j
    np.testing.assert_allclose(layer(ndl.Tensor(x)).numpy(), pieces.max(axis=1), rtol=1e-6)


def test_protocol_networks_have_the_published_shapes():
    np.random.seed(0)
    G, D = ProtocolGenerator(), ProtocolDiscriminator(in_features=4)
    linears = [m for m in G.net.modules if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(2, 400), (400, 400), (400, 400),
                                                        (400, 400), (400, 2)]
    assert [m.bias is None for m in linears] == [True] * 4 + [False]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in G.net.modules) == 4
    maxouts = [m for m in D.net.modules if isinstance(m, Maxout)]
    assert [tuple(m.linear.weight.shape) for m in maxouts] == [(4, 1000), (200, 1000),
                                                               (200, 1000)]
    weights = np.concatenate([m.weight.numpy().ravel() for m in linears])
    assert abs(weights.std() - 0.02) < 0.001 and float(linears[-1].bias.numpy().max()) == 0
    assert G(ndl.Tensor(np.zeros((5, 2), np.float32))).shape == (5, 2)
    assert D(ndl.Tensor(np.zeros((5, 4), np.float32))).shape == (5,)


def test_table_prints_measured_beside_published(capsys, tmp_path):
    ring = {"seeds": 10, "steps": 2000, "published": mode_collapse.PUBLISHED["ring"],
            "methods": {"gan": {"modes_covered": {"mean": 7.5, "se": 0.25},
                                "high_quality": {"mean": 0.64, "se": 0.031}}}}
    stacked = {"seeds": 1, "steps": 1000, "published": mode_collapse.PUBLISHED["stacked"],
               "methods": {"pacdcgan2": {"modes_covered": {"mean": 612.0, "se": None},
                                         "kl_to_uniform": {"mean": 1.234, "se": None}}}}
    files = []
    for name, report in (("ring", ring), ("stacked", stacked)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({name: report}))
    mode_collapse.main(["--table", *map(str, files)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == ("| ring | gan | 10 x 2000 | 7.5 ± 0.2 | 64.0% ± 3.1% | 1.0, 99.3%; "
                        "VEEGAN Table 1 (5 runs) |")
    assert lines[3] == ("| stacked | pacdcgan2 | 1 x 1000 | 612.0 | 1.23 | 1000.0 ± 0.0, "
                        "0.06 ± 0.00; PacGAN Table 2 (10 runs) |")


def test_table_names_an_unreadable_report(tmp_path):
    broken = tmp_path / "ring.json"
    broken.write_text('{"ring": ')
    with pytest.raises(SystemExit, match="ring.json"):
        mode_collapse.main(["--table", str(broken)])
