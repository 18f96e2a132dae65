"""apps.train_stylegan: the dry run and its pictures, --pictures on a trained run, --minutes,
option errors, a run stopped and resumed that ends bit for bit where an uninterrupted one
does (style mixing, noise and lazy R1 all drawing on the checkpointed RNG), and apps.evaluate
scoring a run."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from apps import evaluate, train_stylegan
from apps.common import DEFAULT_DATA_DIR
from apps.run_models import open_run
from gan import metrics
from tests.gan.test_kill_resume import final_state, write_tiny_mnist

pytestmark = pytest.mark.nd_only

TINY = ["--width", "2", "--w_dim", "8", "--latent_dim", "8", "--mapping_layers", "2",
        "--batch_size", "8", "--num_samples", "4", "--no_progress", "--log_every", "2"]


def test_the_dry_run_trains_three_steps_and_draws_both_pictures(tmp_path):
    run = tmp_path / "dry"
    record = train_stylegan.main(["--dry_run", "--noise", "--out_dir", str(run), *TINY])
    assert record["step"] == 3
    for name in ("report.html", "run.json", "samples/step_00000003.png",
                 "checkpoints/step_00000003.safetensors", "stylegan_mixing.png",
                 "stylegan_truncation.png"):
        assert (run / name).exists(), name
    state = final_state(run)
    assert "generator.mapping.w_avg" in state and "ema.mapping.w_avg" in state
    assert any(key.endswith("noise.noise_const") for key in state)
    with Image.open(run / "stylegan_mixing.png") as mixing, \
            Image.open(run / "stylegan_truncation.png") as sweep:
        assert mixing.text["title"].startswith("coarse styles (w 0-2) from the row")
        assert sweep.text["title"].startswith("truncation")
        first = (mixing.width, mixing.height)
    (run / "stylegan_mixing.png").unlink()
    paths = train_stylegan.main(["--pictures", str(run)])
    assert paths == [str(run / "stylegan_mixing.png"), str(run / "stylegan_truncation.png")]
    with Image.open(run / "stylegan_mixing.png") as again:
        assert (again.width, again.height) == first


def test_no_noise_builds_g_without_noise_inputs_and_its_run_redraws_its_pictures(tmp_path):
    run = tmp_path / "quiet"
    train_stylegan.main(["--dry_run", "--no_noise", "--out_dir", str(run), *TINY])
    state = final_state(run)
    assert "generator.mapping.w_avg" in state
    assert not any("noise" in key for key in state)
    G = train_stylegan.load_run_generator(open_run(str(run)))
    assert all(layer.noise is None for layer in G.layers())
    assert train_stylegan.main(["--pictures", str(run)])[0] == str(run / "stylegan_mixing.png")


def test_the_defaults_are_the_recipe_that_trains_and_the_flags_give_stylegan2_back():
    """Default: no noise inputs, demodulation, a tanh output and G's lr 0.01 (D's 0.001);
    --noise --output linear is StyleGAN2's G, --no_demod leaves demodulation out."""
    args = train_stylegan.build_parser().parse_args([])
    assert (args.no_noise, args.demodulate, args.output) == (True, True, "tanh")
    assert (args.lr, args.g_lr, args.d_lr) == (0.001, 0.01, None)
    G = train_stylegan.build_generator(args, None)
    assert G.output == "tanh"
    assert all(layer.noise is None and layer.demodulate == (not layer.to_rgb)
               for layer in G.layers())
    plain = train_stylegan.build_generator(
        train_stylegan.build_parser().parse_args(["--no_demod"]), None)
    assert not any(layer.demodulate for layer in plain.layers())
    D = train_stylegan.StyleGANDiscriminator(1, 32, width=args.width)
    assert train_stylegan.adam(args, G, "g").lr == 0.01
    assert train_stylegan.adam(args, D, "d").lr == 0.001
    G.eval()
    images = G(train_stylegan.ndl.Tensor(np.random.RandomState(0).randn(4, 64)
                                         .astype(np.float32))).numpy()
    assert images.shape == (4, 1, 32, 32) and np.abs(images).max() < 1
    back = train_stylegan.build_parser().parse_args(["--noise", "--demod", "--output",
                                                     "linear"])
    G2 = train_stylegan.build_generator(back, None)
    assert G2.output == "linear"
    assert all(layer.noise is not None and layer.demodulate
               for layer in G2.layers() if not layer.to_rgb)
    assert all(layer.noise is None and not layer.demodulate
               for layer in G2.layers() if layer.to_rgb)


def test_a_run_from_before_demod_and_output_loads_as_stylegan2s_g(tmp_path):
    run = tmp_path / "old"
    train_stylegan.main(["--dry_run", "--out_dir", str(run), *TINY])
    manifest = json.loads((run / "run.json").read_text())
    for key in ("demodulate", "output"):
        del manifest["args"][key]
    (run / "run.json").write_text(json.dumps(manifest))
    G = train_stylegan.load_run_generator(open_run(str(run)))
    assert G.output == "linear"
    assert all(layer.demodulate for layer in G.layers() if not layer.to_rgb)


def test_resume_is_bit_exact(tmp_path):
    """6 steps straight against 2 steps, then a resume to 6: every weight, buffer (w_avg,
    the EMA), optimizer state and the RNG equal; R1 every 2 D steps and mixing every step."""
    base = ["--data_dir", write_tiny_mnist(tmp_path / "data"), "--limit", "64", *TINY,
            "--mixing_prob", "1", "--lazy_every", "2", "--r1", "1", "--checkpoint_every", "2",
            "--noise"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_stylegan.main(base + ["--out_dir", str(straight), "--max_steps", "6"])
    train_stylegan.main(base + ["--out_dir", str(split), "--max_steps", "2"])
    record = train_stylegan.main(["--resume", "--out_dir", str(split), "--max_steps", "6",
                                  "--no_progress"])
    assert record["step"] == 6
    expected, got = final_state(straight), final_state(split)
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    assert any(key.startswith("adversarial.") for key in got)
    assert not np.array_equal(got["generator.mapping.w_avg"], 0)


def test_minutes_stops_after_the_step_that_spends_them_and_the_run_resumes(tmp_path, capsys):
    run = tmp_path / "timed"
    data = write_tiny_mnist(tmp_path / "data")
    record = train_stylegan.main(["--data_dir", data, "--limit", "64", *TINY, "--out_dir",
                                  str(run), "--minutes", "0.00001"])
    assert record["step"] == 1
    assert json.loads((run / "budget.json").read_text())["step"] == 1
    assert (run / "checkpoints" / "step_00000001.safetensors").exists()
    assert (run / "stylegan_truncation.png").exists()
    assert "--minutes 1e-05 spent at step 1; continue with" in capsys.readouterr().err
    record = train_stylegan.main(["--resume", "--out_dir", str(run), "--max_steps", "3",
                                  "--no_progress"])
    assert record["step"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--crossover", "8"], "--crossover 8: G has 8 styles"),
    (["--minutes", "0"], "--minutes 0.0: give a positive number of minutes"),
    (["--mixing_prob", "1.5"], "--mixing_prob"),
    (["--objective", "wasserstein"], "invalid choice: 'wasserstein'"),
])
def test_option_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        train_stylegan.main(["--out_dir", str(tmp_path / "run"), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_pictures_of_another_apps_run_is_a_one_line_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").mkdir()
    with pytest.raises(SystemExit) as stop:
        train_stylegan.main(["--pictures", str(run)])
    assert "no intact checkpoint" in str(stop.value)


@pytest.mark.skipif(not os.path.exists(os.path.join(DEFAULT_DATA_DIR,
                                                    "t10k-images-idx3-ubyte.gz")),
                    reason="needs data/mnist")
def test_apps_evaluate_scores_a_run_on_its_clipped_outputs(tmp_path):
    """apps.evaluate scores a train_stylegan run's EMA(G) (its G with --weights g) on its
    outputs clipped to [-1, 1], as the app's own --evaluate does (a linear-output G: a tanh
    one's outputs need no clipping)."""
    run = tmp_path / "dry"
    train_stylegan.main(["--dry_run", "--output", "linear", "--out_dir", str(run), *TINY])
    fast = ["--num_samples", "200", "--real_count", "1000", "--json"]
    scores = evaluate.main(["--checkpoint", str(run), *fast])
    assert scores["app"] == "train_stylegan" and scores["weights"] == "ema"
    assert scores["step"] == 3 and scores["image_size"] == 32
    assert json.loads((run / "eval.json").read_text())["fid"] == scores["fid"]
    evaluator = metrics.Evaluator.from_mnist(DEFAULT_DATA_DIR, 1000, num_samples=200)
    ema = train_stylegan.load_run_generator(open_run(str(run)))
    assert scores["fid"] == pytest.approx(
        train_stylegan.clipped_scores(evaluator, ema)["fid"], rel=1e-6)
    assert scores["fid"] != pytest.approx(evaluator(ema)["fid"], rel=1e-3)  # unclipped
    plain = evaluate.main(["--checkpoint", str(run), "--weights", "g", *fast])
    generator = train_stylegan.load_run_generator(open_run(str(run)), weights="g")
    assert plain["weights"] == "g" and plain["fid"] == pytest.approx(
        train_stylegan.clipped_scores(evaluator, generator)["fid"], rel=1e-6)
    assert plain["fid"] != scores["fid"]
