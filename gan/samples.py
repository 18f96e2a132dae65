"""What a recipe's `sample()` returns: the picture gan.Trainer writes to samples/.

    ImageGrid(images, rows=None, row_labels=None)   NCHW images in [-1, 1], as a tiled grid
    PointCloud(points, mixture=None)                (N, 2) points, as a scatter plot over the
                                                    mixture's mode centres

Each has `values` (the array it shows: the engine stops a run whose samples are not finite)
and `save(path, title, metadata)`, which writes the picture atomically. The engine checks the
diversity of an ImageGrid's `images` (gan.health); a PointCloud has none to check.
"""
import numpy as np

from .images import save_grid

__all__ = ["ImageGrid", "PointCloud"]


class ImageGrid:
    """Images shown as a grid: `rows` rows (default near-square), one label per row."""

    def __init__(self, images, rows=None, row_labels=None):
        self.images, self.rows, self.row_labels = images, rows, row_labels
        self.values = images

    def save(self, path, title=None, metadata=None):
        return save_grid(self.images, path, rows=self.rows, metadata=metadata, title=title,
                         row_labels=self.row_labels)


class PointCloud:
    """Generated 2-D points over the mode centres (with 3-std circles) of `mixture`."""

    images = None  # nothing for the image health checks

    def __init__(self, points, mixture=None):
        self.points, self.mixture = np.asarray(points), mixture
        self.values = self.points

    def save(self, path, title=None, metadata=None):
        from .plots import plt, save_figure  # matplotlib (Agg), imported on first use

        figure, axes = plt.subplots(figsize=(5, 5))
        axes.scatter(self.points[:, 0], self.points[:, 1], s=2, alpha=0.4, label="generated")
        reach = float(np.abs(self.points).max()) * 1.1 + 0.5
        if self.mixture is not None:
            centres, std = self.mixture.centres, self.mixture.std
            axes.scatter(centres[:, 0], centres[:, 1], marker="x", c="red", s=30,
                         label="mode centres")
            for x, y in centres:
                axes.add_patch(plt.Circle((x, y), 3 * std, fill=False, color="red", lw=0.5))
            reach = float(np.abs(centres).max()) * 1.5 + 0.5
        axes.set_xlim(-reach, reach)
        axes.set_ylim(-reach, reach)
        axes.set_aspect("equal")
        axes.legend(loc="upper right", fontsize=7)
        if title:
            axes.set_title(title, fontsize=9)
        return save_figure(figure, path)
