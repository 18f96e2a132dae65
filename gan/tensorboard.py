"""Optional TensorBoard event files: the metrics records as scalars, the sample grids as images.

    logger = TensorBoardLogger("runs/dcgan")     # events under runs/dcgan/tensorboard/
    logger.log(record, step)                     # each numeric field -> a scalar of that name
    logger.image("samples", "runs/dcgan/samples/step_00000500.png", step)
    logger.close()

then `tensorboard --logdir runs`. The events are written by tensorboardX (a standalone
writer, no TensorFlow), the `tensorboard` extra: pip install 'needle-gan[tensorboard]'.
TensorBoard's event files are append-only streams that the library owns, so they are the one
kind of file in a run folder not written through needle.fileio; run.json, metrics.jsonl and
the grids stay the record of the run. On resume, `purge_step` (the step resumed from) tells
TensorBoard to drop the earlier files' events from that step on, which the resumed run redoes.
"""
import math
import os
import time

import numpy as np

__all__ = ["TensorBoardLogger", "MISSING_EXTRA", "FOLDER"]

MISSING_EXTRA = "--tensorboard needs: pip install 'needle-gan[tensorboard]'"
FOLDER = "tensorboard"
_NOT_SCALARS = ("step", "epoch", "time")


class TensorBoardLogger:
    """Event files in `out_dir`/tensorboard; ImportError(MISSING_EXTRA) without tensorboardX."""

    def __init__(self, out_dir, purge_step=None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as error:
            raise ImportError(MISSING_EXTRA) from error
        self.folder = os.path.join(out_dir, FOLDER)
        # tensorboardX names the file by the second; the nanoseconds keep a resume started
        # within that second from overwriting the file before it, and sort after it
        self._writer = SummaryWriter(self.folder, purge_step=purge_step, flush_secs=10,
                                     filename_suffix=f".{time.time_ns()}")

    def log(self, record, step):
        """A scalar for each finite int or float field of `record` (not step, epoch or
        time), stamped with the record's "time". NaN and Inf are left out: TensorBoard draws
        nothing for them, and metrics.jsonl and the report show the divergence."""
        walltime = record.get("time")
        walltime = walltime if _finite(walltime) else None
        for key, value in record.items():
            if key not in _NOT_SCALARS and _finite(value):
                self._writer.add_scalar(key, float(value), int(step), walltime=walltime)
        self._writer.flush()

    def image(self, name, picture, step):
        """`picture`: a PNG/JPEG path, an (H, W) or (H, W, C) uint8 array, or NCHW images in
        [-1, 1] (tiled as gan.images.make_grid does)."""
        if isinstance(picture, (str, os.PathLike)):
            from PIL import Image
            with Image.open(picture) as opened:
                array = np.asarray(opened.convert("RGB" if opened.mode not in ("L", "RGB")
                                                  else opened.mode))
        else:
            array = np.asarray(picture)
            if array.ndim == 4:
                from .images import make_grid
                array = make_grid(array)
            elif array.dtype != np.uint8:
                raise ValueError(f"TensorBoardLogger.image: a picture array must be uint8 "
                                 f"(H, W[, C]) or NCHW images, got {array.dtype} "
                                 f"{array.shape}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        self._writer.add_image(name, array, int(step),
                               dataformats="HW" if array.ndim == 2 else "HWC")
        self._writer.flush()

    def close(self):
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _finite(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) \
        and math.isfinite(value)
