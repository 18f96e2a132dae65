"""Training checkpoints: one safetensors file each, complete or absent.

A checkpoint holds every component's state dict under its name ("generator.net.0.weight",
"adversarial.optimizer.m.3", ...), NumPy's global RNG keys and any extra arrays (the epoch's
data order). Everything else a resume needs (step, epoch, position, the RNG's counters, the
config, the run id and app) is JSON in the file's metadata. `needle.save` writes through
needle.fileio's atomic writer, so a kill at any moment leaves the previous checkpoint intact.
A killed writer's temporary file (".step_*.safetensors.PID.HEX.tmp") never has a
checkpoint's name; the next save removes it.

The metadata also holds "gan.state_sha256", a digest of the training state alone (arrays and
JSON state, without the run's id and app): two runs that trained the same steps on the same
data have the same state digest, though their files differ in the run id.

Damaged files are set aside, never trusted and never the reason an intact one goes:
`recover_checkpoints` (what a resume uses) renames every damaged checkpoint newer than the
newest intact one to NAME.corrupt and returns that intact one; `save_checkpoint` keeps the
`keep` newest *intact* checkpoints up to the step it wrote (a damaged one among them is set
aside the same way) and never touches a checkpoint of a later step. `latest_checkpoint` only
reads: the newest checkpoint that verifies.

Errors: a checkpoint that is damaged, has bad JSON state, or does not fit the models raises
CheckpointError naming the file; a write that fails (a full disk, a read-only folder) raises
CheckpointWriteError (an OSError with the errno) naming the file, and leaves the earlier
checkpoints as they were.
"""
import errno
import glob
import hashlib
import json
import os
import re

import numpy as np

import needle as ndl
from needle.serialization import CheckpointError, load_metadata

from .runfiles import clean_stale_temp_files

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "recover_checkpoints",
           "checkpoint_path", "checkpoint_step", "checkpoint_info", "list_checkpoints",
           "state_digest",
           "CheckpointError", "CheckpointWriteError"]


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; earlier checkpoints are untouched."""


_INFO_KEY = "gan.trainer"
_STATE_KEY = "gan.state_sha256"
_IDENTITY = ("run_id", "app")  # what tells two runs apart, not what they trained
_NAME = re.compile(r"step_(\d+)\.safetensors$")


def checkpoint_path(folder, step):
    return os.path.join(folder, f"step_{step:08d}.safetensors")


def save_checkpoint(folder, step, components, info, arrays=None, keep=2, report=None):
    """Write components' state, the RNG and `info` (JSON-able) for `step`; keep the newest
    `keep` intact checkpoints up to `step`. Returns the path. `report(message)` hears of a
    damaged checkpoint set aside while pruning."""
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
        ndl.save(state, path, metadata={_INFO_KEY: json.dumps(info),
                                        _STATE_KEY: _state_digest(state, info)})
    except OSError as error:
        code = error.errno or errno.EIO
        previous = [p for p in list_checkpoints(folder) if p != path] \
            if os.path.isdir(folder) else []
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else \
            "no earlier checkpoint exists"
        raise CheckpointWriteError(
            code, f"save_checkpoint: could not write {path} for step {step} "
                  f"({error.strerror or error}); nothing was written, {kept}") from error
    _prune(folder, step, keep, report)
    return path


def _prune(folder, step, keep, report):
    """Remove checkpoints older than the `keep` newest intact ones up to `step` (the one
    just written counts as one); damaged ones met on the way are set aside."""
    intact = 1
    for path in reversed([p for p in list_checkpoints(folder) if checkpoint_step(p) < step]):
        if intact >= keep:
            os.remove(path)
            continue
        reason = _damage(path)
        if reason is None:
            intact += 1
        else:
            moved = _set_aside(path)
            if report is not None:
                report(f"checkpoint {path} is damaged ({reason}); set aside as {moved}")


def _state_digest(state, info):
    """SHA-256 over the arrays (sorted by name: name, dtype, shape, bytes) and the JSON state
    without the run's identity."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.asarray(state[name])
        digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
        digest.update(array.tobytes())
    rest = {k: v for k, v in info.items() if k not in _IDENTITY}
    digest.update(json.dumps(rest, sort_keys=True).encode())
    return digest.hexdigest()


def state_digest(path):
    """The training-state digest saved in a checkpoint's metadata, or None (older files)."""
    return load_metadata(path).get(_STATE_KEY)


def list_checkpoints(folder):
    """Checkpoint files in `folder` (step_XXXXXXXX.safetensors), oldest first."""
    paths = [p for p in glob.glob(os.path.join(folder, "step_*.safetensors")) if _NAME.search(p)]
    return sorted(paths, key=checkpoint_step)


def checkpoint_step(path):
    """The step in a checkpoint's file name."""
    return int(_NAME.search(path).group(1))


def _damage(path):
    """None if the checkpoint at `path` verifies, else why not (one line)."""
    try:
        checkpoint_info(path)
        ndl.load(path)
    except CheckpointError as error:
        return str(error).replace(path, os.path.basename(path))
    return None


def _set_aside(path):
    """Rename a damaged checkpoint to NAME.corrupt (NAME.corrupt.2, ... if taken)."""
    target, n = f"{path}.corrupt", 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt.{n}"
    os.replace(path, target)
    return target


def latest_checkpoint(folder):
    """The newest checkpoint in `folder` that verifies, or None. Changes nothing."""
    for path in reversed(list_checkpoints(folder)):
        if _damage(path) is None:
            return path
    return None


def recover_checkpoints(folder):
    """(the newest intact checkpoint or None, [(path, set aside as, why)]): every damaged
    checkpoint newer than it is renamed NAME.corrupt first."""
    set_aside = []
    for path in reversed(list_checkpoints(folder)):
        reason = _damage(path)
        if reason is None:
            return path, set_aside
        set_aside.append((path, _set_aside(path), reason))
    return None, set_aside


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
        problems = str(error).strip("'\"").split("; ")
        shown = "; ".join(problems[:2]) + (f"; ... {len(problems) - 2} more" if
                                           len(problems) > 2 else "")
        raise CheckpointError(f"{path} does not fit the models being trained: {failed}: "
                              f"{shown}. Build them with the options the run was trained "
                              "with (run.json's \"args\"), or start a new run") from error
    np.random.set_state(rng_state)
    used = {key for key in state if key == "rng.keys"
            or any(key.startswith(name + ".") for name in components)}
    return info, {key: value for key, value in state.items() if key not in used}
