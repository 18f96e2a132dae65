"""apps.sample on tiny train_dcgan / train_cgan / train_wgan_gp runs: the three pictures,
their layout and labels, the format from --out, the weights through apps.run_models, the
latent paths, and one-line refusals of runs without images of noise."""
import re

import numpy as np
import pytest
from PIL import Image

import needle as ndl
from apps import sample, train_cgan, train_cyclegan, train_dcgan, train_wgan_gp


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dcgan")
    train_dcgan.main(["--dry_run", "--out_dir", str(run), "--width", "8", "--no_progress"])
    return run


@pytest.fixture
def saved(monkeypatch):
    """The save_grid calls apps.sample makes (they still write their files)."""
    calls = []
    real = sample.save_grid

    def recording(images, path, **kwargs):
        calls.append(dict(kwargs, count=len(images), path=path))
        return real(images, path, **kwargs)

    monkeypatch.setattr(sample, "save_grid", recording)
    return calls


def test_sample_app_writes_the_three_pictures(dcgan_run, tmp_path, saved):
    grid = sample.main(["--checkpoint", str(dcgan_run), "--n", "16",
                        "--out", str(tmp_path / "grid.png")])
    line = sample.main(["--checkpoint", str(dcgan_run), "--mode", "interpolate", "--rows", "2",
                        "--steps", "5", "--out", str(tmp_path / "interpolate.jpg")])
    arithmetic = sample.main(["--checkpoint", str(dcgan_run), "--mode", "arithmetic",
                              "--n", "16", "--groups", "1,2,3;4,5,6;9,10,11"])
    assert arithmetic == str(dcgan_run / "sample_arithmetic.png")
    grid_call, line_call, arithmetic_call = saved
    assert grid_call["count"] == 16 and grid_call.get("rows") is None
    assert grid_call["title"] == "train_dcgan  step 3  epoch 0  grid"
    assert line_call["count"] == 20 and line_call["rows"] == 4  # per pair: lerp, then slerp
    assert line_call["row_labels"] == ["lerp", "slerp", "lerp", "slerp"]
    assert arithmetic_call["count"] == 16 and arithmetic_call["rows"] == 4
    assert arithmetic_call["row_labels"] == ["A", "B", "C", "A - B + C"]
    assert arithmetic_call["col_labels"] == ["", "", "", "mean"]
    with Image.open(grid) as picture:
        assert picture.format == "PNG" and picture.text["title"] == grid_call["title"]
    with Image.open(line) as picture:
        assert picture.format == "JPEG"
    with Image.open(arithmetic) as picture:
        assert picture.text["mode"] == "arithmetic" and picture.text["app"] == "train_dcgan"
        assert picture.text["checkpoint"] == "step_00000003.safetensors"


def test_conditional_rows_carry_their_digit(tmp_path, saved):
    run = tmp_path / "cgan"
    train_cgan.main(["--dry_run", "--out_dir", str(run), "--width", "8", "--no_progress"])
    sample.main(["--checkpoint", str(run), "--n", "20"])
    sample.main(["--checkpoint", str(run), "--mode", "interpolate", "--rows", "3",
                 "--steps", "4"])
    grid_call, line_call = saved
    assert grid_call["count"] == 20 and grid_call["rows"] == 10
    assert grid_call["row_labels"] == [str(d) for d in range(10)]
    assert grid_call["title"] == "train_cgan  step 3  epoch 0  grid"
    assert line_call["row_labels"] == ["lerp 0", "slerp 0", "lerp 1", "slerp 1",
                                       "lerp 2", "slerp 2"]


def test_an_unknown_picture_format_is_refused_before_loading(dcgan_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.main(["--checkpoint", str(dcgan_run), "--out", str(tmp_path / "x.gif")])
    assert exit_info.value.code == 2
    assert "argument --out: cannot tell the image format of" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()


def test_arithmetic_groups_index_the_grid_batch(dcgan_run):
    _, generator = sample.open_generator(str(dcgan_run))
    args = sample.build_parser().parse_args(["--checkpoint", str(dcgan_run), "--n", "12",
                                             "--groups", "0,1,2;5,6,7;9,10,11"])
    device = generator.parameters()[0].device
    grid, _ = sample.picture(generator, "grid", args, device)
    arithmetic, layout = sample.picture(generator, "arithmetic", args, device)
    assert layout["rows"] == 4 and arithmetic.shape == (16, 1, 28, 28)
    np.testing.assert_allclose(arithmetic[0:3], grid[0:3], atol=1e-5)    # row A
    np.testing.assert_allclose(arithmetic[4:7], grid[5:8], atol=1e-5)    # row B
    np.testing.assert_allclose(arithmetic[8:11], grid[9:12], atol=1e-5)  # row C
    # the "mean" column: the decoded group means, and mean(A) - mean(B) + mean(C) last
    z = np.random.RandomState(0).randn(12, generator.latent_dim)
    means = [z[[0, 1, 2]].mean(0), z[[5, 6, 7]].mean(0), z[[9, 10, 11]].mean(0)]
    expected = np.stack(means + [means[0] - means[1] + means[2]]).astype(np.float32)
    with ndl.no_grad():
        decoded = generator(ndl.Tensor(expected, device=device, requires_grad=False)).numpy()
    np.testing.assert_allclose(arithmetic[[3, 7, 11, 15]], decoded, atol=1e-5)


def assert_saved_weights(generator, checkpoint):
    saved = ndl.load(checkpoint)
    state = generator.state_dict()
    assert state and not generator.training
    for name, value in state.items():
        np.testing.assert_array_equal(value, saved[f"generator.{name}"])


def test_sample_loads_the_saved_generator_weights(dcgan_run):
    run, generator = sample.open_generator(str(dcgan_run))
    assert run.app == "train_dcgan" and run.checkpoint.endswith("step_00000003.safetensors")
    assert_saved_weights(generator, run.checkpoint)


def test_a_wgan_gp_mnist_run_is_sampled(tmp_path, saved):
    run = tmp_path / "wgan_gp"
    train_wgan_gp.main(["--data", "mnist", "--dry_run", "--out_dir", str(run), "--width", "8",
                        "--no_progress"])
    out = sample.main(["--checkpoint", str(run), "--n", "9", "--out", str(tmp_path / "w.png")])
    (call,) = saved
    assert call["count"] == 9 and call["title"] == "train_wgan_gp  step 4  epoch 1  grid"
    opened, generator = sample.open_generator(str(run))
    assert_saved_weights(generator, opened.checkpoint)
    with Image.open(out) as picture:
        assert picture.text["app"] == "train_wgan_gp"
    # the picture is the generator's: the same seeded z decoded by hand
    args = sample.build_parser().parse_args(["--checkpoint", str(run), "--n", "9"])
    images, _ = sample.picture(generator, "grid", args, generator.parameters()[0].device)
    z = np.random.RandomState(0).randn(9, generator.latent_dim).astype(np.float32)
    with ndl.no_grad():
        np.testing.assert_allclose(images, generator(ndl.Tensor(z)).numpy(), atol=1e-6)


def test_runs_without_images_of_noise_are_refused_in_one_line(tmp_path, capsys):
    points = tmp_path / "points"
    train_wgan_gp.main(["--data", "ring8", "--dry_run", "--out_dir", str(points),
                        "--no_progress"])
    cyclegan = tmp_path / "cyclegan"
    train_cyclegan.main(["--dry_run", "--out_dir", str(cyclegan), "--width", "4",
                         "--n_blocks", "1", "--d_width", "4", "--no_progress"])
    capsys.readouterr()
    for run, message in ((points, r"is a train_wgan_gp run on 2-D points \(ring8\), not "
                                  r"images: .* apps\.evaluate scores its modes"),
                         (cyclegan, r"is a train_cyclegan run, which has no generator of "
                                    r"noise; .*apps\.translate applies it")):
        with pytest.raises(SystemExit) as stop:
            sample.main(["--checkpoint", str(run)])
        assert str(stop.value).startswith(f"sample: {run} ") and "\n" not in str(stop.value)
        assert re.search(message, str(stop.value)), stop.value
        assert not (run / "sample_grid.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--mode", "arithmetic", "--n", "4"],
     r"argument --groups: indices must be in \[0, --n\) = \[0, 4\), got 0,1,2;3,4,5;6,7,8"),
    (["--mode", "arithmetic", "--groups", "0,1;2,3;4,5"],
     r"argument --groups: expected three groups of three indices, got '0,1;2,3;4,5'"),
    (["--groups", "a;b;c"], r"argument --groups: expected \"0,1,2;3,4,5;6,7,8\""),
    (["--n", "0"], r"argument --n: must be an integer >= 1, got 0"),
    (["--label", "-1"], r"argument --label: must be an integer >= 0, got -1"),
])
def test_bad_options_are_refused_at_parse_time(dcgan_run, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        sample.main(["--checkpoint", str(dcgan_run), *argv])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("python -m apps.sample: error: ") and "\n" not in error
    assert re.search(message, error), error


def test_bad_runs_and_labels_are_one_line(dcgan_run, tmp_path):
    with pytest.raises(SystemExit, match=r"^sample: \S*nothing is neither a run folder nor a "
                                         r"checkpoint file$"):
        sample.main(["--checkpoint", str(tmp_path / "nothing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"^sample: no intact checkpoint in "):
        sample.main(["--checkpoint", str(tmp_path / "empty")])


def test_lerp_and_slerp_paths():
    rng = np.random.RandomState(0)
    z0, z1 = rng.randn(100), rng.randn(100)
    t = np.linspace(0, 1, 7)
    for path in (sample.lerp(z0, z1, t), sample.slerp(z0, z1, t)):
        assert path.shape == (7, 100)
        np.testing.assert_allclose(path[0], z0, atol=1e-12)
        np.testing.assert_allclose(path[-1], z1, atol=1e-12)
    np.testing.assert_allclose(sample.lerp(z0, z1, [0.5])[0], (z0 + z1) / 2)
    # slerp between unit vectors stays on the unit sphere and moves at constant angle
    u0, u1 = z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)
    path = sample.slerp(u0, u1, t)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1, rtol=1e-12)
    angles = np.arccos(np.clip(np.sum(path[1:] * path[:-1], axis=1), -1, 1))
    np.testing.assert_allclose(angles, angles[0], rtol=1e-9)
    np.testing.assert_allclose(sample.slerp(z0, 2 * z0, t), sample.lerp(z0, 2 * z0, t))
