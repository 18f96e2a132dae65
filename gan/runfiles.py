"""The files of a run folder that must survive a kill: run.json and metrics.jsonl.

run.json is the reproducibility manifest: the command line, the configuration, the seed, the
versions of needle, NumPy and CuPy (when importable), the backend and device, every resume,
and the SHA-256 of each checkpoint written (of the file, and of the training state it holds:
gan.checkpoint's state digest, equal for two runs that trained the same); and what the run
is: its `run_id` (a uuid, also in every checkpoint), the `app` that made it, its `target`
({"epochs", "max_steps", "steps"}), the `step` of its newest checkpoint, its `status`
("running", "finished", "interrupted", "diverged") and the `pid` and `host` of the process
that trains it. It is rewritten through needle.fileio's atomic writer after each checkpoint,
so at any moment it is the old or the new manifest.

metrics.jsonl holds one JSON line per record. It is rewritten whole through the atomic writer
each time a record is added (a run has hundreds of records, not millions), so it is never
cut short; the reader still skips a line that does not parse (a file from an older writer),
and a resume rewrites it with the records up to the checkpoint it resumes from.
"""
import datetime
import hashlib
import json
import os
import re
import shlex
import sys

import numpy as np

import needle as ndl
from needle.fileio import atomic_write

__all__ = ["RunManifest", "write_json_atomic", "read_manifest", "write_history",
           "read_history", "file_sha256", "versions", "clean_stale_temp_files",
           "process_alive"]

# Temporary names of needle.fileio (".NAME.PID.HEX.tmp"), and of the writers before it
# ("NAME.PID.tmp", "NAME.PID.tmp.png", ".NAME.PID.tmp") that a killed older run may have left.
_TEMP = re.compile(r"\.(\d+)\.(?:[0-9a-f]{8}\.)?tmp(?:\.png)?$")


def process_alive(pid):
    """Whether process `pid` (on this host) is running: it exists and is not a zombie (a
    killed process nobody has reaped yet, as a killed MPI rank can stay where init reaps no
    orphans, runs nothing). A process we may not signal counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temp_files(folder):
    """Remove temporary files left in `folder` by killed writers; returns their names."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        match = _TEMP.search(name)
        pid = int(match.group(1)) if match else None
        # our own leftovers too: this process writes one file at a time
        if match and (pid == os.getpid() or not process_alive(pid)):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def write_json_atomic(path, data):
    """Write `data` as JSON to `path` through needle.fileio's atomic writer."""
    atomic_write(path, json.dumps(data, indent=1))


def read_manifest(out_dir):
    """The run.json of `out_dir` as a dict; {} when it is missing or does not parse."""
    try:
        with open(os.path.join(out_dir, "run.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_history(path, records):
    """Replace metrics.jsonl at `path` with `records`, one JSON line each, atomically."""
    atomic_write(path, "".join(json.dumps(record) + "\n" for record in records))


def read_history(path, up_to_step=None):
    """The records in metrics.jsonl (lines that do not parse are skipped).

    With `up_to_step`, records after that step (work lost since the checkpoint) are dropped
    and the file is rewritten atomically with the rest."""
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if isinstance(record, dict):
                records.append(record)
    if up_to_step is not None:
        records = [r for r in records if r.get("step", 0) <= up_to_step]
        write_history(path, records)
    return records


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions():
    """{"python", "needle", "numpy", "cupy"}: cupy is None when it cannot be imported."""
    try:
        import cupy
        cupy_version = cupy.__version__
    except Exception:  # not installed, or installed without a usable CUDA
        cupy_version = None
    return {"python": sys.version.split()[0], "needle": ndl.__version__,
            "numpy": np.__version__, "cupy": cupy_version}


def _command_line():
    """The command as typed (python -m apps.X ...), from sys.orig_argv where there is one."""
    argv = getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv
    return shlex.join(argv)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


class RunManifest:
    """run.json of one run folder. `start()` at the beginning of a run or a resume,
    `add_checkpoint(path, step)` after each checkpoint, `update(status=...)` when it ends."""

    def __init__(self, out_dir, config=None, seed=None, device=None, **info):
        self.path = os.path.join(out_dir, "run.json")
        self.out_dir = out_dir
        self.data = {"argv": list(sys.argv), "command": _command_line(),
                     "config": _jsonable(config or {}), "seed": seed,
                     "versions": versions(),
                     "backend": ndl.backend_selection.BACKEND, "device": str(device),
                     "numpy": np.__version__,  # also in versions; kept for older readers
                     **_jsonable(info)}

    def start(self, resumed_from=None):
        """Write run.json. A resume keeps the earlier manifest's start, checkpoints (up to
        the step resumed from) and resumes, and adds this resume."""
        now = datetime.datetime.now().isoformat(timespec="seconds")
        checkpoints, resumes, started, step = [], [], now, 0
        if resumed_from is not None:
            step, checkpoint = resumed_from
            earlier = read_manifest(self.out_dir)
            started = earlier.get("started", now)
            resumes = earlier.get("resumes", [])
            checkpoints = [c for c in earlier.get("checkpoints", []) if c["step"] <= step]
            resumes.append({"argv": list(sys.argv), "from_step": step, "time": now})
            if checkpoint and not any(c["step"] == step for c in checkpoints):
                checkpoints.append(self._entry(checkpoint, step))
        self.data.update(started=started, resumes=resumes, checkpoints=checkpoints,
                         step=step, status="running")
        write_json_atomic(self.path, self.data)

    def update(self, **fields):
        """Set `fields` (e.g. status="finished") and rewrite run.json atomically."""
        self.data.update(_jsonable(fields))
        write_json_atomic(self.path, self.data)

    def _entry(self, path, step):
        from .checkpoint import state_digest  # gan.checkpoint imports this module

        return {"step": int(step), "file": os.path.relpath(path, self.out_dir),
                "sha256": file_sha256(path), "state_sha256": state_digest(path),
                "time": datetime.datetime.now().isoformat(timespec="seconds")}

    def add_checkpoint(self, path, step):
        """Record the checkpoint's SHA-256 and rewrite run.json atomically."""
        checkpoints = [c for c in self.data.setdefault("checkpoints", [])
                       if c["step"] != step]
        checkpoints.append(self._entry(path, step))
        self.data["checkpoints"] = checkpoints
        self.data["step"] = int(step)
        write_json_atomic(self.path, self.data)

