"""The toolkit's flags through the apps: each combination trains a few steps, stops, resumes
and ends bit for bit where the uninterrupted run ends (SN's u, the EMA weights, ADA's p and
the lazy schedule are all in the checkpoints); --recipe fills only what is not given, and a
resume keeps the run's own values."""
import importlib
import json

import numpy as np
import pytest

from tests.gan.test_kill_resume import final_state, write_tiny_mnist

COMBINATIONS = [
    ("train_dcgan", ["--spectral_norm", "--ema", "0.9", "--diffaugment",
                     "color,translation,cutout", "--ada"]),
    ("train_dcgan", ["--r1", "1", "--lazy_every", "2", "--label_smoothing", "0.1",
                     "--minibatch_std", "--feature_matching", "0.5"]),
    ("train_dcgan", ["--objective", "rpgan", "--d_lr", "4e-4", "--g_lr", "1e-4"]),
    ("train_dcgan", ["--recipe", "modern"]),
    ("train_cgan", ["--num_classes", "3", "--num_samples", "6", "--spectral_norm", "--ema",
                    "0.5", "--diffaugment", "translation,cutout", "--ada", "--ada_target",
                    "0.2"]),
    ("train_wgan_gp", ["--data", "mnist", "--n_critic", "2", "--lazy_every", "3", "--r1",
                       "2", "--ema", "0.8"]),
]


def run(app, args):
    return importlib.import_module(f"apps.{app}").main(args)


@pytest.mark.parametrize("app, flags", COMBINATIONS,
                         ids=[f"{a}:{' '.join(f)[:40]}" for a, f in COMBINATIONS])
def test_flag_combinations_train_and_resume_bit_exactly(tmp_path, app, flags):
    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "96", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--checkpoint_every", "3", "--log_every", "1",
            "--no_progress", "--epochs", "1", "--sample_every", "4", *flags]
    run(app, base + ["--out_dir", str(tmp_path / "straight"), "--max_steps", "8"])
    run(app, base + ["--out_dir", str(tmp_path / "split"), "--max_steps", "3"])
    run(app, base + ["--out_dir", str(tmp_path / "split"), "--max_steps", "8", "--resume"])
    expected, got = final_state(tmp_path / "straight"), final_state(tmp_path / "split")
    assert expected.keys() == got.keys()
    for key in expected:
        np.testing.assert_array_equal(expected[key], got[key], err_msg=key)
    keys = " ".join(expected)
    if "--spectral_norm" in flags:
        assert "weight_u" in keys or "._u" in keys or ".u" in keys, keys
    if "--ema" in flags:
        assert "ema." in keys
    if "--ada" in flags:
        assert "augment.p" in keys
        records = [json.loads(line) for line in
                   (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
        assert any("augment_p" in r for r in records)
    if "--lazy_every" in flags:
        records = [json.loads(line) for line in
                   (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
        with_penalty = [r["step"] for r in records if r.get("kind") == "interval"
                        and any(k.startswith("penalty_") for k in r)]
        assert with_penalty and len(with_penalty) < 8


def saved_options(out_dir):
    return json.loads((out_dir / "run.json").read_text())["args"]


def test_the_recipe_fills_only_options_not_given_and_a_resume_keeps_them(tmp_path):
    from apps.techniques import RECIPES

    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "32", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--no_progress", "--epochs", "1"]
    modern = tmp_path / "modern"
    run("train_dcgan", base + ["--out_dir", str(modern), "--recipe", "modern", "--ema", "0",
                               "--max_steps", "2"])
    options = saved_options(modern)
    assert options["ema"] == 0  # given: wins over the recipe
    for name, value in RECIPES["modern"].items():
        if name != "ema":
            assert options[name] == value, name
    run("train_dcgan", base + ["--out_dir", str(modern), "--resume", "--max_steps", "3"])
    assert saved_options(modern)["ema"] == 0  # the resume did not re-apply the recipe
    classic = tmp_path / "classic"
    run("train_dcgan", base + ["--out_dir", str(classic), "--max_steps", "1"])
    options = saved_options(classic)
    assert options["recipe"] == "classic" and not options["ema"]
    assert not options["diffaugment"] and not options["spectral_norm"]


@pytest.mark.parametrize("flags, message", [
    (["--ada"], "--ada adapts the probability of --diffaugment"),
    (["--diffaugment", "flip"], "expected a comma-separated subset"),
    (["--ema", "1"], "must be in [0.0, 1.0)"),
    (["--label_smoothing", "0.5"], "must be in [0.0, 0.5)"),
    (["--lazy_every", "0"], "must be an integer >= 1"),
    (["--objective", "hinge", "--label_smoothing", "0.1"], "--label_smoothing applies to"),
])
def test_bad_technique_options_are_one_line_errors(capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        run("train_dcgan", ["--dry_run", "--no_progress", *flags])
    assert stop.value.code != 0
    err = capsys.readouterr().err
    assert message in err, err


def test_wgan_gp_refuses_image_techniques_on_points(capsys):
    with pytest.raises(SystemExit):
        run("train_wgan_gp", ["--data", "ring8", "--diffaugment", "translation", "--dry_run"])
    assert "--data ring8 trains MLPs on 2-D points" in capsys.readouterr().err


def test_sampling_and_scoring_lead_with_the_ema_when_the_run_kept_one(tmp_path, capsys):
    from apps import sample
    from apps.run_models import load_generator, open_run
    from gan import RunFolderError

    data_dir = write_tiny_mnist(tmp_path / "data")
    base = ["--data_dir", data_dir, "--limit", "32", "--batch_size", "8", "--width", "4",
            "--latent_dim", "8", "--no_progress", "--max_steps", "3"]
    run("train_dcgan", base + ["--out_dir", str(tmp_path / "ema"), "--ema", "0.5"])
    run("train_dcgan", base + ["--out_dir", str(tmp_path / "plain")])
    with_ema = open_run(str(tmp_path / "ema"))
    state = final_state(tmp_path / "ema")
    for weights, prefix in (("auto", "ema."), ("ema", "ema."), ("g", "generator.")):
        loaded = load_generator(with_ema, weights=weights).state_dict()
        for key, value in loaded.items():
            np.testing.assert_array_equal(value, state[prefix + key], err_msg=key)
    assert any(not np.array_equal(state["ema." + k], state["generator." + k])
               for k in loaded)
    with pytest.raises(RunFolderError, match="kept no EMA of G"):
        load_generator(open_run(str(tmp_path / "plain")), weights="ema")
    out = tmp_path / "grid.png"
    sample.main(["--checkpoint", str(tmp_path / "ema"), "--weights", "g", "--n", "4",
                 "--out", str(out)])
    assert out.stat().st_size > 0
    from apps import evaluate
    small = ["--num_samples", "20", "--real_count", "100", "--json"]
    scores = {}
    for weights in ("auto", "g"):
        evaluate.main(["--checkpoint", str(tmp_path / "ema"), "--weights", weights, *small])
        scores[weights] = json.loads((tmp_path / "ema" / "eval.json").read_text())
    assert scores["auto"]["weights"] == "ema" and scores["g"]["weights"] == "g"
    assert scores["auto"]["fid"] != scores["g"]["fid"]
