"""Training checkpoints: one safetensors file each, complete or absent.

A checkpoint holds every component's state dict under its name ("generator.net.0.weight",
"adversarial.optimizer.m.3", ...), NumPy's global RNG keys and any extra arrays (the epoch's
data order). Everything else a resume needs (step, epoch, position, the RNG's counters, the
config) is JSON in the file's metadata. `needle.save` writes atomically, so a kill at any
moment leaves the previous checkpoint intact, and `latest_checkpoint` skips anything that
does not verify.
"""
import glob
import json
import os
import re

import numpy as np

import needle as ndl
from needle.serialization import CheckpointError, load_metadata

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoint_path"]

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
    os.makedirs(folder, exist_ok=True)
    path = checkpoint_path(folder, step)
    ndl.save(state, path, metadata={_INFO_KEY: json.dumps(info)})
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
            load_metadata(path)
            ndl.load(path)
        except CheckpointError:
            continue
        return path
    return None


def load_checkpoint(path, components):
    """Restore components and NumPy's RNG from `path`; returns (info, extra arrays)."""
    state = ndl.load(path)
    metadata = load_metadata(path)
    if _INFO_KEY not in metadata:
        raise CheckpointError(f"{path}: not a training checkpoint (no {_INFO_KEY!r} metadata)")
    info = json.loads(metadata[_INFO_KEY])
    for name, component in components.items():
        prefix = name + "."
        component.load_state_dict({key[len(prefix):]: value for key, value in state.items()
                                   if key.startswith(prefix)})
    rng = info["rng"]
    np.random.set_state((rng["name"], state["rng.keys"], rng["pos"], rng["has_gauss"],
                         rng["cached_gaussian"]))
    used = {key for key in state if key == "rng.keys"
            or any(key.startswith(name + ".") for name in components)}
    return info, {key: value for key, value in state.items() if key not in used}
