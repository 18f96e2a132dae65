"""An independent reference for needle.data.ImageFolder's test transform, written with Pillow."""
import numpy as np
from PIL import Image

__all__ = ["centre_crop_by_hand"]


def centre_crop_by_hand(path, size, mode="RGB"):
    """Shorter side to `size` (bicubic, aspect kept), the centre square, in `mode` ("RGB" or
    "L"), scaled to [-1, 1], as a float32 CHW array."""
    with Image.open(path) as picture:
        w, h = picture.size
        scale = size / min(w, h)
        resized = picture.convert("RGB").resize((max(size, round(w * scale)),
                                                 max(size, round(h * scale))), Image.BICUBIC)
        left, top = (resized.size[0] - size) // 2, (resized.size[1] - size) // 2
        array = np.asarray(resized.crop((left, top, left + size, top + size)).convert(mode),
                           dtype=np.float32)
    array = array[:, :, None] if array.ndim == 2 else array
    return (array.transpose(2, 0, 1) / 127.5 - 1).astype(np.float32)
