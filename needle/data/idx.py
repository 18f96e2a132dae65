"""A verifying reader for IDX files (MNIST's format), gzip-compressed or not.

A data file that is truncated, corrupt or the wrong file should stop training at load time
with a message that names the file and says what is wrong, not surface later as a reshape
error or as silently garbled images. So the reader checks the gzip stream, the magic number,
the element type, the size the header promises against the bytes present and, when a
`CHECKSUMS.txt` sits beside the file, the size and SHA-256 of the uncompressed bytes.

CHECKSUMS.txt lines look like
`train-images-idx3-ubyte.gz  uncompressed_bytes=47040016  uncompressed_sha256=ba89...`;
files it does not list are not checked against it.
"""
import gzip
import hashlib
import math
import os
import zlib

import numpy as np

__all__ = ["DataFileError", "read_idx"]

CHECKSUMS_FILE = "CHECKSUMS.txt"
_UBYTE = 0x08  # IDX type code of unsigned bytes, the only one MNIST uses


class DataFileError(ValueError):
    """A data file is missing pieces, corrupt, or does not match what was expected."""


def _read_bytes(path):
    """The file's uncompressed bytes (gunzipped when the name ends in .gz)."""
    with open(path, "rb") as f:  # a missing file stays a FileNotFoundError
        raw = f.read()
    if not str(path).endswith(".gz"):
        return raw
    if raw[:2] != b"\x1f\x8b":
        raise DataFileError(f"{path}: not a gzip file (expected magic bytes 1f 8b, got "
                            f"{raw[:2].hex(' ') or 'an empty file'})")
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"{path}: corrupt or truncated gzip data "
                            f"({len(raw)} compressed bytes): {error}") from error


def _checksum_entry(path):
    """(fields of `path`'s CHECKSUMS.txt line or None, the CHECKSUMS.txt path)."""
    folder, name = os.path.split(os.path.abspath(path))
    listing = os.path.join(folder, CHECKSUMS_FILE)
    if not os.path.exists(listing):
        return None, listing
    with open(listing, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == name:
                return dict(p.split("=", 1) for p in parts[1:] if "=" in p), listing
    return None, listing


def _verify_checksum(path, data):
    entry, listing = _checksum_entry(path)
    if entry is None:
        return
    expected_size = entry.get("uncompressed_bytes")
    if expected_size is not None and int(expected_size) != len(data):
        raise DataFileError(f"{path}: {len(data)} uncompressed bytes, but {listing} expects "
                            f"{expected_size}")
    expected_hash = entry.get("uncompressed_sha256")
    if expected_hash is not None:
        actual_hash = hashlib.sha256(data).hexdigest()
        if actual_hash != expected_hash.lower():
            raise DataFileError(f"{path}: sha256 of the uncompressed bytes is {actual_hash}, "
                                f"but {listing} expects {expected_hash}")


def read_idx(path, ndim):
    """An IDX file of unsigned bytes with `ndim` dimensions as a uint8 array (a view).

    Raises DataFileError naming `path` and the expected vs actual magic, size or checksum.
    """
    data = _read_bytes(path)
    _verify_checksum(path, data)
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFileError(f"{path}: {len(data)} bytes, too short for the {header_size}-byte "
                            f"header of a {ndim}-d IDX file (truncated?)")
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (_UBYTE << 8) | ndim
    if magic != expected_magic:
        raise DataFileError(f"{path}: bad magic number 0x{magic:08x}, expected "
                            f"0x{expected_magic:08x} (IDX unsigned bytes, {ndim} dims)")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + math.prod(shape)  # Python ints: no overflow on bad headers
    if len(data) != expected_size:
        kind = "truncated" if len(data) < expected_size else "trailing bytes"
        raise DataFileError(f"{path}: header says shape {shape}, i.e. {expected_size} bytes, "
                            f"but the file has {len(data)} ({kind})")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)
