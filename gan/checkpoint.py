"""Training checkpoints: one safetensors file each, complete or absent.

A checkpoint holds every component's state dict under its name ("generator.net.0.weight",
"adversarial.optimizer.m.3", ...), NumPy's global RNG keys and any extra arrays (the epoch's
data order). Everything else a resume needs (step, epoch, position, the RNG's counters, the
config) is JSON in the file's metadata. `needle.save` writes atomically, so a kill at any
moment leaves the previous checkpoint intact, and `latest_checkpoint` skips anything that
does not verify. A killed writer's temporary file (".step_*.safetensors.PID.HEX.tmp") never
has a checkpoint's name; the next save removes it.

Errors: a checkpoint that is damaged, has bad JSON state, or does not fit the models raises
CheckpointError naming the file; a write that fails (a full disk, a read-only folder) raises
CheckpointWriteError (an OSError with the errno) naming the file, and leaves the earlier
checkpoints as they were.
"""
import errno
import glob
import json
import os
import re

import numpy as np

import needle as ndl
from needle.serialization import CheckpointError, load_metadata

from .runfiles import clean_stale_temp_files

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoint_path",
           "checkpoint_info", "CheckpointError", "CheckpointWriteError"]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; earlier checkpoints are untouched."""


_INFO_KEY = "gan.trainer"
_NAME = re.compile(r"step_(\d+)\.safetensors$")


def checkpoint_path(folder, step):
    return os.path.join(folder, f"step_{step:08d}.safetensors")


def save_checkpoint(folder, step, components, info, arrays=None, keep=2):
    """Write components' state, the RNG and `info` (JSON-able) for `step`; keep the newest
    `keep` checkpoints. Returns the path."""
    state = {}
    for name, component in components.items():
        state.update({f"{name}.{key}": value for key, value in component.state_dict().items()})
    rng_name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state["rng.keys"] = keys
    state.update(arrays or {})
    info = dict(info, step=step, rng={"name": rng_name, "pos": int(position),
                                      "has_gauss": int(has_gauss),
                                      "cached_gaussian": float(cached_gaussian)})
    path = checkpoint_path(folder, step)
    try:
        os.makedirs(folder, exist_ok=True)
        clean_stale_temp_files(folder)
        ndl.save(state, path, metadata={_INFO_KEY: json.dumps(info)})
    except OSError as error:
        code = error.errno or errno.EIO
        previous = [p for p in _checkpoints(folder) if p != path] if os.path.isdir(folder) \
            else []
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else \
            "no earlier checkpoint exists"
        raise CheckpointWriteError(
            code, f"save_checkpoint: could not write {path} for step {step} "
                  f"({error.strerror or error}); nothing was written, {kept}") from error
    for old in _checkpoints(folder)[:-keep]:
        os.remove(old)
    return path


def _checkpoints(folder):
    """Checkpoint files in `folder`, oldest first."""
    paths = [p for p in glob.glob(os.path.join(folder, "step_*.safetensors")) if _NAME.search(p)]
    return sorted(paths, key=lambda p: int(_NAME.search(p).group(1)))


def latest_checkpoint(folder):
    """The newest checkpoint in `folder` that verifies, or None."""
    for path in reversed(_checkpoints(folder)):
        try:
            checkpoint_info(path)
            ndl.load(path)
        except CheckpointError:
            continue
        return path
    return None


def checkpoint_info(path):
    """The JSON state saved in the checkpoint's metadata (step, epoch, config, RNG, ...).

    Raises CheckpointError naming the file when it is missing or is not valid JSON."""
    metadata = load_metadata(path)
    if _INFO_KEY not in metadata:
        raise CheckpointError(f"{path}: not a training checkpoint (no {_INFO_KEY!r} metadata)")
    try:
        info = json.loads(metadata[_INFO_KEY])
    except ValueError as error:
        raise CheckpointError(f"{path}: the {_INFO_KEY!r} metadata is not valid JSON "
                              f"({error})") from error
    missing = [key for key in ("step", "rng") if not isinstance(info, dict) or key not in info]
    if missing:
        raise CheckpointError(f"{path}: the {_INFO_KEY!r} metadata lacks {missing}")
    rng = info["rng"]
    if not isinstance(rng, dict) or \
            not {"name", "pos", "has_gauss", "cached_gaussian"} <= set(rng):
        raise CheckpointError(f"{path}: the saved RNG state {rng!r} is incomplete")
    return info


def load_checkpoint(path, components):
    """Restore components and NumPy's RNG from `path`; returns (info, extra arrays).

    Everything is checked before anything is changed: a checkpoint that does not fit the
    components raises CheckpointError naming the file and the first mismatches."""
    state = ndl.load(path)
    info = checkpoint_info(path)
    if "rng.keys" not in state:
        raise CheckpointError(f"{path}: no 'rng.keys' array (not a training checkpoint)")
    rng = info["rng"]
    rng_state = (rng["name"], state["rng.keys"], rng["pos"], rng["has_gauss"],
                 rng["cached_gaussian"])
    try:
        np.random.RandomState().set_state(rng_state)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the saved RNG state does not load: {error}") from error
    parts = {}
    for name, component in components.items():
        prefix = name + "."
        parts[name] = {key[len(prefix):]: value for key, value in state.items()
                       if key.startswith(prefix)}
    backups = {name: component.state_dict() for name, component in components.items()}
    failed = None
    try:
        for failed, component in components.items():
            component.load_state_dict(parts[failed])
    except (ValueError, KeyError, TypeError) as error:
        for name, component in components.items():  # undo the parts already loaded
            component.load_state_dict(backups[name])
        raise CheckpointError(f"{path} does not fit the models being trained: {failed}: "
                              f"{error}") from error
    np.random.set_state(rng_state)
    used = {key for key in state if key == "rng.keys"
            or any(key.startswith(name + ".") for name in components)}
    return info, {key: value for key, value in state.items() if key not in used}
