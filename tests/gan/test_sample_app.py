"""apps.sample on a tiny train_dcgan run: the three pictures, their layout, the latent paths."""
import numpy as np
import pytest
from PIL import Image

from apps import sample, train_dcgan


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dcgan")
    train_dcgan.main(["--dry_run", "--out_dir", str(run), "--width", "8", "--no_progress"])
    return run


def tiles(path, tile=28, padding=2, scale=2):
    """(rows, cols) of a gan.images.save_grid picture."""
    with Image.open(path) as picture:
        width, height = picture.size
    step = (tile + padding) * scale
    return (height - padding * scale) // step, (width - padding * scale) // step


def test_sample_app_writes_the_three_pictures(dcgan_run, tmp_path):
    grid = sample.main(["--checkpoint", str(dcgan_run), "--n", "16",
                        "--out", str(tmp_path / "grid.png")])
    assert tiles(grid) == (4, 4)
    line = sample.main(["--checkpoint", str(dcgan_run), "--mode", "interpolate", "--rows", "2",
                        "--steps", "5", "--out", str(tmp_path / "interpolate.png")])
    assert tiles(line) == (4, 5)  # per pair: a linear row, then a spherical one
    arithmetic = sample.main(["--checkpoint", str(dcgan_run), "--mode", "arithmetic",
                              "--n", "16", "--groups", "1,2,3;4,5,6;9,10,11"])
    assert arithmetic == str(dcgan_run / "sample_arithmetic.png")
    assert tiles(arithmetic) == (4, 4)
    with Image.open(arithmetic) as picture:
        assert picture.text["mode"] == "arithmetic" and picture.text["app"] == "train_dcgan"


def test_arithmetic_groups_index_the_grid_batch(dcgan_run):
    generator, _, _ = sample.load_generator(str(dcgan_run))
    args = sample.build_parser().parse_args(["--checkpoint", str(dcgan_run), "--n", "12",
                                             "--groups", "0,1,2;5,6,7;9,10,11"])
    device = generator.parameters()[0].device
    grid, _, _ = sample.picture(generator, "grid", args, device)
    arithmetic, rows, _ = sample.picture(generator, "arithmetic", args, device)
    assert rows == 4 and arithmetic.shape == (16, 1, 28, 28)
    np.testing.assert_allclose(arithmetic[0:3], grid[0:3], atol=1e-5)    # row A
    np.testing.assert_allclose(arithmetic[4:7], grid[5:8], atol=1e-5)    # row B
    np.testing.assert_allclose(arithmetic[8:11], grid[9:12], atol=1e-5)  # row C


def test_sample_loads_the_saved_generator_weights(dcgan_run):
    generator, info, checkpoint = sample.load_generator(str(dcgan_run))
    assert info["app"] == "train_dcgan" and checkpoint.endswith("step_00000003.safetensors")
    import needle as ndl
    saved = ndl.load(checkpoint)
    for name, value in generator.state_dict().items():
        np.testing.assert_array_equal(value, saved[f"generator.{name}"])
    assert not generator.training


def test_bad_arguments_are_named(dcgan_run, tmp_path):
    with pytest.raises(SystemExit, match="groups"):
        sample.main(["--checkpoint", str(dcgan_run), "--mode", "arithmetic", "--n", "4"])
    with pytest.raises(SystemExit, match="groups"):
        sample.main(["--checkpoint", str(dcgan_run), "--mode", "arithmetic",
                     "--groups", "0,1;2,3;4,5"])
    with pytest.raises(SystemExit, match="neither"):
        sample.main(["--checkpoint", str(tmp_path / "nothing")])


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
