"""gan.plots: markers for series too short for a line, and atomic figure files."""
import errno
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from gan import plots

RECORDS = [{"step": 50, "d_loss": 1.2, "g_loss": 0.9, "d_real": 0.6, "d_fake": 0.4},
           {"step": 50, "fid": 80.0},  # an epoch-end record: no losses
           {"step": 100, "d_loss": 1.0, "g_loss": 1.1, "d_real": 0.55, "d_fake": 0.45}]


@pytest.mark.parametrize("count, marker", [(1, "o"), (2, "None"), (3, "None")])
def test_a_series_shorter_than_two_points_gets_markers(count, marker):
    plt = plots.plt
    figure, axes = plt.subplots()
    try:
        records = [{"step": 10 * i, "d_loss": float(i)} for i in range(count)]
        plots.plot_series(axes, records + [{"step": 99}], "d_loss", "D loss")
        (line,) = axes.get_lines()
        assert line.get_marker() == marker
        np.testing.assert_array_equal(line.get_xdata(), [10 * i for i in range(count)])
    finally:
        plt.close(figure)


def test_one_record_history_is_visible(tmp_path):
    """A run stopped after its first interval still plots a point for each series."""
    path = plots.plot_history(RECORDS[:1], str(tmp_path / "losses.png"))
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB")).reshape(-1, 3)
    # matplotlib's first two colours (tab:blue, tab:orange) are there: the two markers
    for colour in ([31, 119, 180], [255, 127, 14]):
        assert (np.abs(rgb.astype(int) - colour).sum(axis=1) < 30).any()


def test_plot_history_skips_records_without_the_key(tmp_path):
    plt = plots.plt
    figure, axes = plt.subplots()
    try:
        plots.plot_series(axes, RECORDS, "d_loss", "D loss")
        np.testing.assert_array_equal(axes.get_lines()[0].get_xdata(), [50, 100])
    finally:
        plt.close(figure)


def test_a_failed_save_keeps_the_old_figure_and_no_temporary(tmp_path, monkeypatch):
    path = plots.plot_history(RECORDS, str(tmp_path / "losses.png"))
    before = pathlib.Path(path).read_bytes()
    from matplotlib.figure import Figure

    def disk_full(self, fname, *args, **kwargs):
        fname.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", disk_full)
    with pytest.raises(OSError, match=r"cannot write .*losses\.png: No space left"):
        plots.plot_history(RECORDS[:1], path)
    assert pathlib.Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["losses.png"]
    assert plots.plt.get_fignums() == []  # the figure was closed all the same


def test_panels_keep_only_what_the_run_logged(tmp_path, monkeypatch):
    """plot_panels drops keys no record has and panels left empty; each kept key is one
    line over the records that have it."""
    drawn, save = {}, plots.save_figure

    def capture(figure, path):
        drawn["panels"] = [(ax.get_ylabel(), [line.get_label() for line in ax.get_lines()])
                           for ax in figure.axes]
        drawn["title"] = figure.axes[0].get_title()
        return save(figure, path)

    monkeypatch.setattr(plots, "save_figure", capture)
    path = plots.plot_panels(RECORDS, str(tmp_path / "losses.png"), "run", [
        ("loss", ("d_loss", "g_loss", "kl")), ("KL only", ("kl",)),
        ("D output", ("d_real", "d_fake"))])
    assert drawn == {"title": "run", "panels": [("loss", ["d_loss", "g_loss"]),
                                                ("D output", ["d_real", "d_fake"])]}
    with Image.open(path) as picture:
        assert picture.format == "PNG"


def test_panels_of_an_empty_history_still_write_a_figure(tmp_path):
    path = plots.plot_panels([], str(tmp_path / "losses.png"), "run", [("loss", ("d_loss",))])
    with Image.open(path) as picture:
        assert picture.size[0] > 100
