"""Translate a folder of images with a trained CycleGAN: python -m apps.translate --help

    python -m apps.translate --checkpoint runs/cyclegan --input_dir photos --out_dir out
    python -m apps.translate --checkpoint runs/cyclegan --input_dir out --out_dir back \\
        --direction BtoA

Each image file in --input_dir (sorted by name; files without an image extension are
skipped) is resized so its shorter side is the image size, centre-cropped (the test-time
preprocessing of needle.data.ImageFolder), translated by G (AtoB, domain A to B) or F (BtoA)
of the run's newest intact checkpoint, and written to OUT_DIR/NAME.png (the input's name
with the extension .png), each file atomically. The image size is the run's unless
--image_size is given (the generators are fully convolutional: any multiple of 4 works).
Channels are the model's: colour images given to a grayscale model are converted to their
luma, grayscale images given to a colour model repeat their band.

Every image is read before anything is written, so a corrupt file, a missing folder or a
checkpoint of another app stops the app with one line and an untouched --out_dir.
"""
import os
import sys

import numpy as np
from PIL import Image

import needle as ndl
from gan.images import to_uint8
from needle.data import DataFileError, ImageFolder
from needle.fileio import atomic_writer

from .cli import USER_ERRORS, AppParser, multiple_of, one_line, positive_int
from .common import DEVICES, resolve_device
from .run_models import DIRECTIONS, load_translator, open_run

__all__ = ["build_parser", "main", "translate_folder"]

APP = "translate"


def build_parser():
    parser = AppParser(APP, __doc__)
    add = parser.add_argument
    add("--checkpoint", required=True,
        help="a train_cyclegan run folder (its newest intact checkpoint) or one checkpoint file")
    add("--input_dir", "--input-dir", required=True, help="folder of images to translate")
    add("--out_dir", "--out-dir", required=True,
        help="folder for the translated PNGs (made if missing)")
    add("--direction", choices=sorted(DIRECTIONS), default="AtoB",
        help="AtoB: G, domain A to B; BtoA: F, domain B to A")
    add("--image_size", "--image-size", type=multiple_of(4), default=None,
        help="side of the square images translated, a multiple of 4 (None: the run's "
             "--image_size)")
    add("--batch_size", "--batch-size", type=positive_int, default=16,
        help="images per forward pass")
    add("--device", choices=sorted(DEVICES), default="cpu_numpy",
        help="cpu_numpy: NumPy; cpu: the course's flat-memory device; cuda: CuPy on a GPU")
    add("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _output_names(names, out_dir):
    """OUT_DIR/stem.png for each input name; two inputs with one stem are an error."""
    outputs = {}
    for name in names:
        out = os.path.splitext(name)[0] + ".png"
        if out in outputs:
            raise DataFileError(f"{outputs[out]!r} and {name!r} would both be written to "
                                f"{os.path.join(out_dir, out)!r}; rename one of them")
        outputs[out] = name
    return [os.path.join(out_dir, out) for out in outputs]


def translate_folder(generator, input_dir, out_dir, image_size, batch_size=16, device=None):
    """Translate every image of `input_dir` with `generator`; returns the written paths."""
    if os.path.abspath(input_dir) == os.path.abspath(out_dir):
        raise DataFileError(f"--out_dir {out_dir!r} is the input folder; the translations "
                            "would replace the images they come from")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataFileError(f"--out_dir {out_dir!r} is a file, not a folder")
    images = ImageFolder(input_dir, image_size, channels=generator.channels, train=False)
    paths = _output_names(images.names, out_dir)
    translated = []
    with ndl.no_grad():
        for start in range(0, len(images), batch_size):
            x = ndl.Tensor(images[start:start + batch_size], device=device,
                           requires_grad=False)
            translated.append(generator(x).numpy())
    pictures = to_uint8(np.concatenate(translated))
    os.makedirs(out_dir, exist_ok=True)
    for path, picture in zip(paths, pictures):
        mode = "L" if picture.shape[2] == 1 else "RGB"
        with atomic_writer(path) as f:
            Image.fromarray(picture[:, :, 0] if mode == "L" else picture, mode).save(f, "PNG")
    return paths


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        run = open_run(args.checkpoint)
        generator = load_translator(run, args.direction, device=device)
        image_size = args.image_size or run.args.get("image_size") or 28
        paths = translate_folder(generator, args.input_dir, args.out_dir, image_size,
                                 args.batch_size, device)
    except USER_ERRORS as error:
        if args.debug:
            raise
        sys.exit(f"{APP}: {one_line(error)}")
    name = "G" if args.direction == "AtoB" else "F"
    print(f"translate: {len(paths)} images of {args.input_dir} translated {args.direction} "
          f"by {name} of {run.folder} (step {run.step}) at {image_size}x{image_size}; "
          f"PNGs in {args.out_dir}")
    return paths


if __name__ == "__main__":
    main()
