"""What a recipe's `sample()` returns: the picture gan.Trainer writes to samples/.

    ImageGrid(images, rows=None, row_labels=None)   NCHW images in [-1, 1], as a tiled grid
    PointCloud(points, mixture=None)                (N, 2) points, as a scatter plot over the
                                                    mixture's mode centres
    Panels({"G": grid, "EMA(G)": grid})             pictures side by side, each titled

Each has `values` (the array it shows: the engine stops a run whose samples are not finite),
`picture(title)` (the Pillow image) and `save(path, title, metadata)`, which writes it
atomically with `metadata` as PNG text. The engine checks the diversity of an ImageGrid's
`images` (gan.health; of Panels, the first panel's); a PointCloud has none to check.
"""
import io

import numpy as np
from PIL import Image

from .images import grid_picture, save_grid, save_picture, side_by_side

__all__ = ["ImageGrid", "PointCloud", "Panels"]


class ImageGrid:
    """Images shown as a grid: `rows` rows (default near-square), one label per row."""

    def __init__(self, images, rows=None, row_labels=None):
        self.images, self.rows, self.row_labels = images, rows, row_labels
        self.values = images

    def picture(self, title=None):
        return grid_picture(self.images, rows=self.rows, title=title,
                            row_labels=self.row_labels)

    def save(self, path, title=None, metadata=None):
        return save_grid(self.images, path, rows=self.rows, metadata=metadata, title=title,
                         row_labels=self.row_labels)


class PointCloud:
    """Generated 2-D points over the mode centres (with 3-std circles) of `mixture`."""

    images = None  # nothing for the image health checks

    def __init__(self, points, mixture=None):
        self.points, self.mixture = np.asarray(points), mixture
        self.values = self.points

    def picture(self, title=None):
        from .plots import plt  # matplotlib (Agg), imported on first use

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
        buffer = io.BytesIO()
        try:
            figure.tight_layout()
            figure.savefig(buffer, format="png", dpi=100)  # as gan.plots.save_figure
        finally:
            plt.close(figure)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")

    def save(self, path, title=None, metadata=None):
        return save_picture(self.picture(title), path, metadata=metadata, title=title)


class Panels:
    """Pictures (ImageGrids or PointClouds) side by side under one title, each under its
    own: {panel title: picture}, shown left to right, e.g. G's samples beside EMA(G)'s."""

    def __init__(self, panels):
        if not panels:
            raise ValueError("Panels: expected at least one picture")
        self.panels = dict(panels)
        first = next(iter(self.panels.values()))
        self.images = first.images  # the health checks read the first panel's samples
        self.values = np.concatenate([np.ravel(p.values) for p in self.panels.values()])

    def picture(self, title=None):
        return side_by_side([p.picture(name) for name, p in self.panels.items()], title=title)

    def save(self, path, title=None, metadata=None):
        return save_picture(self.picture(title), path, metadata=metadata, title=title)
