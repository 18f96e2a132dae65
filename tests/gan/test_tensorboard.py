"""gan.tensorboard: events written with tensorboardX, read back with TensorBoard's own
EventAccumulator (the reader behind `tensorboard --logdir`)."""
import io
import sys

import numpy as np
import pytest
from PIL import Image

from gan.images import make_grid, save_grid
from gan.tensorboard import MISSING_EXTRA, TensorBoardLogger


@pytest.fixture
def read_back():
    """folder -> its events, read by TensorBoard's EventAccumulator."""
    pytest.importorskip("tensorboardX", reason="the `tensorboard` extra (tensorboardX) "
                        "writes the events: pip install 'needle-gan[tensorboard]'")
    reader = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="TensorBoard (in the test extra) reads the events")

    def read(folder):
        events = reader.EventAccumulator(str(folder), size_guidance={"scalars": 0,
                                                                      "images": 0})
        events.Reload()
        return events
    return read


def decoded(image_event):
    with Image.open(io.BytesIO(image_event.encoded_image_string)) as picture:
        return np.asarray(picture)


def test_records_become_scalars(tmp_path, read_back):
    records = [{"step": 50, "epoch": 0, "time": 1000.5, "d_loss": 1.25, "g_loss": 0.75,
                "d_real": 0.5, "warnings": ["[d_saturated] ..."]},
               {"step": 100, "epoch": 0, "time": 1010.0, "d_loss": 1.0, "g_loss": float("nan"),
                "d_real": 0.625, "d_grad_norm": np.float32(3.5)},
               {"step": 100, "epoch": 1, "fid": 42.5, "digits_covered": 9,
                "class_histogram": [1, 2, 3], "flag": True, "app": "train_dcgan"}]
    with TensorBoardLogger(str(tmp_path)) as logger:
        for record in records:
            logger.log(record, record["step"])
    events = read_back(tmp_path / "tensorboard")
    assert sorted(events.Tags()["scalars"]) == ["d_grad_norm", "d_loss", "d_real",
                                                "digits_covered", "fid", "g_loss"]
    d_loss = events.Scalars("d_loss")
    assert [(e.step, e.value, e.wall_time) for e in d_loss] == [(50, 1.25, 1000.5),
                                                                (100, 1.0, 1010.0)]
    assert [(e.step, e.value) for e in events.Scalars("g_loss")] == [(50, 0.75)]  # NaN left out
    assert [(e.step, e.value) for e in events.Scalars("d_grad_norm")] == [(100, 3.5)]
    assert [(e.step, e.value) for e in events.Scalars("fid")] == [(100, 42.5)]


def test_grids_become_images(tmp_path, read_back):
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, (6, 1, 8, 8))
    png = save_grid(images, str(tmp_path / "step_00000010.png"), rows=2, title="step 10")
    colour = (rng.uniform(0, 255, (5, 7, 3))).astype(np.uint8)
    with TensorBoardLogger(str(tmp_path)) as logger:
        logger.image("samples", png, 10)
        logger.image("samples", images, 20)
        logger.image("colour", colour, 30)
    events = read_back(tmp_path / "tensorboard")
    first, second = events.Images("samples")
    with Image.open(png) as picture:
        grey = np.asarray(picture)
    assert (first.step, first.width, first.height) == (10, grey.shape[1], grey.shape[0])
    for channel in range(3):  # TensorBoard keeps grey pictures as RGB
        np.testing.assert_array_equal(decoded(first)[:, :, channel], grey)
        np.testing.assert_array_equal(decoded(second)[:, :, channel], make_grid(images)[:, :, 0])
    assert second.step == 20
    (colour_event,) = events.Images("colour")
    np.testing.assert_array_equal(decoded(colour_event), colour)


def test_a_bad_picture_is_named(tmp_path, read_back):
    with TensorBoardLogger(str(tmp_path)) as logger:
        with pytest.raises(ValueError, match=r"TensorBoardLogger.image: .*float64 \(4, 4\)"):
            logger.image("samples", np.zeros((4, 4)), 1)


def test_a_resume_purges_the_redone_steps(tmp_path, read_back):
    with TensorBoardLogger(str(tmp_path)) as logger:
        for step in (50, 100, 150):
            logger.log({"d_loss": step / 100}, step)
    with TensorBoardLogger(str(tmp_path), purge_step=100) as logger:  # resumed from 100
        for step in (100, 150):
            logger.log({"d_loss": step / 1000}, step)
    events = read_back(tmp_path / "tensorboard")
    scalars = events.Scalars("d_loss")
    assert [e.step for e in scalars] == [50, 100, 150]
    assert [e.value for e in scalars] == pytest.approx([0.5, 0.1, 0.15])
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2  # one file per process


def test_without_the_extra_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if absent
    with pytest.raises(ImportError) as error:
        TensorBoardLogger(str(tmp_path))
    assert str(error.value) == MISSING_EXTRA == \
        "--tensorboard needs: pip install 'needle-gan[tensorboard]'"
    assert not (tmp_path / "tensorboard").exists()
