"""save / load of state dicts as safetensors files: atomic, verified, never pickle.

    ndl.save(model.state_dict(), "ckpt/model.safetensors", metadata={"epoch": "3"})
    state = ndl.load("ckpt/model.safetensors")              # {name: NumPy array}
    state = ndl.load("ckpt/model.safetensors", device=ndl.cpu())   # {name: Tensor}

Why this format: pickle runs code on load, so a checkpoint from the internet could do
anything; safetensors is a JSON header plus raw bytes. Values may be NumPy arrays, Tensors
(saved through `.numpy()`) or Python numbers (saved as 0-d arrays, so an optimizer's
`state_dict()` with its `lr` and step count `t` saves as is; float64 keeps them bit-exact).

Why atomic: a crash or a full disk during a save must never leave a half-written checkpoint
where a good one was. The bytes go to a temporary file in the same folder, are flushed and
fsync'ed, then `os.replace` swaps the name (atomic on POSIX and Windows) and the folder is
fsync'ed so the rename itself survives a power cut.

Why canonical: the same state saved twice, even by two processes, gives the same bytes (the
header's keys are sorted), so a checkpoint's SHA-256 identifies its contents.

Why verified: a checkpoint that is truncated or has flipped bytes must fail loudly at load.
Safetensors checks the header and the data extents; `save` also writes a SHA-256 over the
names, dtypes, shapes, bytes and metadata into the header (key `needle.sha256`), which `load`
checks, so damage inside the data is caught too. Every problem raises CheckpointError naming
the file. A file without the digest is refused too (a damaged key looks just like a missing
one); files written by other tools load with `load(path, verify=False)`.

Layouts differ from PyTorch: course Linear weights are (in, out) where torch.nn.Linear's are
(out, in) (transpose), and the Linear bias is (1, out) vs torch's (out,). Course Conv weights
are (K, K, C_in, C_out) where torch.nn.Conv2d's are (C_out, C_in, K, K): a needle weight
w becomes torch's with `w.transpose(3, 2, 0, 1)` and back with `w.transpose(2, 3, 1, 0)`.
Convert in one place when moving weights between the two, never silently here.
"""
import hashlib
import json
import numbers
import os

import numpy as np

from .fileio import atomic_write

__all__ = ["save", "load", "load_metadata", "CheckpointError"]

DIGEST_KEY = "needle.sha256"


class CheckpointError(ValueError):
    """A checkpoint file is not a readable, intact safetensors file."""


def _to_numpy(key, value):
    from .autograd import Tensor
    if isinstance(value, Tensor):
        value = value.numpy()
    elif isinstance(value, (bool, numbers.Number, np.generic)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"save: value of {key!r} is a {type(value).__name__}; expected a "
                        "NumPy array, a Tensor or a number")
    if value.dtype == object:
        raise TypeError(f"save: value of {key!r} is an object array; cannot be saved")
    if not value.dtype.isnative:  # safetensors stores little-endian, NumPy's native order
        value = value.astype(value.dtype.newbyteorder("="))
    # Not np.ascontiguousarray: it turns 0-d arrays (saved numbers) into shape (1,).
    return value if value.flags.c_contiguous else value.copy(order="C")


def _digest(arrays, metadata):
    """SHA-256 over sorted names, dtypes, shapes and bytes, then the metadata."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        digest.update(json.dumps([key, value.dtype.str, list(value.shape)]).encode())
        digest.update(value.reshape(-1).view(np.uint8))
    digest.update(json.dumps(sorted(metadata.items())).encode())
    return digest.hexdigest()


def save(state_dict, path, metadata=None):
    """Write `state_dict` ({str: array, Tensor or number}) to `path` atomically.

    `metadata` is an optional {str: str} dict stored in the header (read it back with
    `load_metadata`). Raises TypeError for values that cannot be saved; on any failure the
    file at `path`, if there was one, is left untouched and no temporary file remains.
    """
    import safetensors.numpy

    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"save: keys must be str, got {key!r}")
        arrays[key] = _to_numpy(key, value)
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map str to str, got {key!r}: {value!r}")
    if DIGEST_KEY in metadata:
        raise ValueError(f"save: metadata key {DIGEST_KEY!r} is reserved")
    metadata[DIGEST_KEY] = _digest(arrays, metadata)
    payload = _canonical_header(safetensors.numpy.save(arrays, metadata=metadata))
    _write_atomic(os.fspath(path), payload)


def _canonical_header(payload):
    """The same file with its JSON header's keys sorted: the safetensors writer orders the
    metadata through a hash map, which differs from process to process, and reproducible
    runs should write byte-identical checkpoints (their SHA-256 go into run manifests).
    Data offsets are relative to the end of the header, so the data bytes stay as they are.
    """
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    return len(text).to_bytes(8, "little") + text + payload[8 + size:]


def _write_atomic(path, payload):
    try:
        atomic_write(path, payload)
    except OSError as error:  # name the op and the size too
        reason = os.strerror(error.errno) if error.errno else str(error)
        message = f"save: cannot write {path} ({len(payload)} bytes): {reason}; any " \
                  "earlier file there is unchanged"
        if error.errno is None:
            raise OSError(message) from error
        raise OSError(error.errno, message) from error


def _read_header(path, data):
    """The parsed JSON header, with clear errors for the usual kinds of damage."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes, too short for a safetensors file "
                              "(truncated or empty?)")
    header_size = int.from_bytes(data[:8], "little")
    if header_size > len(data) - 8:
        raise CheckpointError(f"{path}: header claims {header_size} bytes but the file has "
                              f"only {len(data) - 8} after the size field (truncated, or not "
                              "a safetensors file)")
    try:
        header = json.loads(data[8:8 + header_size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path}: header is not valid JSON (corrupt, or not a "
                              f"safetensors file): {error}") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object (not a safetensors file)")
    return header


def _verify_digest(path, header, arrays):
    metadata = header.get("__metadata__") or {}
    expected = metadata.get(DIGEST_KEY) if isinstance(metadata, dict) else None
    if expected is None:
        raise CheckpointError(f"{path}: no {DIGEST_KEY!r} digest in the header: not written "
                              "by needle.save, or the header is damaged (use "
                              "verify=False to load a safetensors file from another tool)")
    actual = _digest(arrays, {k: v for k, v in metadata.items() if k != DIGEST_KEY})
    if actual != expected:
        raise CheckpointError(f"{path}: contents do not match the saved SHA-256 (saved "
                              f"{expected}, computed {actual}): the file is corrupt")


def _read(path):
    with open(path, "rb") as f:  # a missing file stays a FileNotFoundError
        return f.read()


def load_metadata(path):
    """The {str: str} metadata saved with the checkpoint (without needle's digest)."""
    path = os.fspath(path)
    metadata = _read_header(path, _read(path)).get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: __metadata__ is not a JSON object")
    return {k: v for k, v in metadata.items() if k != DIGEST_KEY}


def load(path, device=None, verify=True):
    """Read a checkpoint: {name: NumPy array}, or {name: constant Tensor} on `device`.

    Raises CheckpointError naming `path` when the file is truncated, corrupt or not a
    safetensors file, and FileNotFoundError when there is no file. `verify=False` skips the
    digest check, for safetensors files that needle did not write.
    """
    import safetensors.numpy

    path = os.fspath(path)
    data = _read(path)
    header = _read_header(path, data)
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as error:  # untrusted bytes: any parse failure is a bad checkpoint
        raise CheckpointError(f"{path}: not a valid safetensors file: {error}") from error
    if verify:
        _verify_digest(path, header, arrays)
    if device is None:
        return arrays
    from .autograd import Tensor
    return {k: Tensor(v, device=device, requires_grad=False) for k, v in arrays.items()}
