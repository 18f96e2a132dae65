"""One run per folder: what gan.Trainer checks before it writes anything.

A run folder holds one run: its run.json names the run (`run_id`, a uuid that every
checkpoint's metadata repeats), the `app` that made it and, while it trains, the process
(`pid`, `host`). So:

  * a new run in a folder that already holds one is refused, naming the folder, its app and
    step, unless it is resumed (`--resume`) or moved aside first (`--overwrite` renames the
    folder to NAME.old-YYYYmmdd-HHMMSS and starts afresh in an empty one); so is a new run in
    a folder that holds other files (a typo such as --out_dir . or ~), which --overwrite
    moves aside the same way, deleting nothing;
  * a folder whose run is training right now (its process alive on this machine) is refused
    for anything, --overwrite included;
  * a resume checks that the folder holds a run of this app and that its newest intact
    checkpoint belongs to that run; damaged checkpoints newer than it are set aside
    (renamed NAME.corrupt, gan.checkpoint.recover_checkpoints) and reported;
  * a folder that is a file, or that cannot be created or written, is an OSError naming it.

Every refusal is a RunFolderError whose one-line message says what to do.
"""
import dataclasses
import errno
import os
import socket
import time
from typing import Optional

from .checkpoint import checkpoint_info, checkpoint_step, list_checkpoints, recover_checkpoints
from .runfiles import process_alive, read_manifest

__all__ = ["RunFolderError", "ExistingRun", "existing_run", "claim_run_folder",
           "resume_point"]


class RunFolderError(ValueError):
    """The run folder cannot be used as asked; the message says why and what to do."""


@dataclasses.dataclass
class ExistingRun:
    """What a folder holds: the run's app, id, newest checkpoint step and target steps
    (each None when the folder does not say)."""

    folder: str
    app: Optional[str]
    run_id: Optional[str]
    step: Optional[int]
    total: Optional[int]
    live_pid: Optional[int] = None  # the process training it now, if there is one

    def describe(self):
        """e.g. 'a train_dcgan run (run 3f2a9c1e, step 500 of 937)'."""
        parts = []
        if self.run_id:
            parts.append(f"run {self.run_id[:8]}")
        if self.step is None:
            parts.append("no checkpoint yet")
        else:
            parts.append(f"step {self.step}" + (f" of {self.total}" if self.total and
                                                 self.total >= self.step else ""))
        return f"a {self.app or 'training'} run ({', '.join(parts)})"


def existing_run(folder):
    """The run `folder` holds (run.json, metrics.jsonl or checkpoints), or None."""
    if not os.path.isdir(folder):
        return None
    checkpoints = list_checkpoints(os.path.join(folder, "checkpoints"))
    if not checkpoints and not any(os.path.exists(os.path.join(folder, name))
                                   for name in ("run.json", "metrics.jsonl")):
        return None
    manifest = read_manifest(folder)
    target = manifest.get("target") if isinstance(manifest.get("target"), dict) else {}
    step = checkpoint_step(checkpoints[-1]) if checkpoints else None
    return ExistingRun(folder, manifest.get("app"), manifest.get("run_id"), step,
                       target.get("steps"), _live_pid(manifest))


def _live_pid(manifest):
    """The pid of the process training this run now (on this host), or None."""
    pid = manifest.get("pid")
    if manifest.get("status") != "running" or not isinstance(pid, int) or \
            manifest.get("host") != socket.gethostname() or pid == os.getpid():
        return None
    return pid if process_alive(pid) else None  # killed without a goodbye: not training


def _refuse_live(run):
    if run is not None and run.live_pid is not None:
        raise RunFolderError(
            f"{run.folder} is in use: {run.describe()} is training in process "
            f"{run.live_pid}; wait for it, stop it (Ctrl-C), or give another --out_dir")


def _usable_folder(folder):
    """Create `folder` if need be and check it is a writable folder (OSError otherwise)."""
    try:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, "it is a file")
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as error:
        raise OSError(error.errno, f"cannot use {folder!r} as the run folder: "
                                   f"{error.strerror or error}; give --out_dir a folder "
                                   "you can write to") from error


def claim_run_folder(folder, app, overwrite=False):
    """Make `folder` ready for a new run of `app`; returns where an old run was moved (or
    None). Refuses (RunFolderError) when it holds a run and `overwrite` is false."""
    if os.path.isdir(folder):
        run = existing_run(folder)
        _refuse_live(run)
        aside = f"{folder.rstrip(os.sep)}.old-<time>"
        if run is not None and not overwrite:
            resume = "continue it with --resume, or " if run.step is not None else ""
            raise RunFolderError(
                f"{folder} already holds {run.describe()}; {resume}start afresh with "
                f"--overwrite (moves it aside to {aside}), or give another --out_dir")
        others = sorted(os.listdir(folder))
        if run is None and others and not overwrite:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise RunFolderError(
                f"{folder} is not empty ({len(others)} entries: {shown}) and holds no run; "
                f"give a new or empty --out_dir, or --overwrite to move it aside to {aside}")
        if run is not None or others:
            moved = _move_aside(folder)
            _usable_folder(folder)
            return moved
    _usable_folder(folder)
    return None


def _move_aside(folder):
    base = f"{folder.rstrip(os.sep)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = base, 1
    while os.path.exists(target):
        n += 1
        target = f"{base}-{n}"
    os.rename(folder, target)
    return target


def resume_point(folder, app, report):
    """(newest intact checkpoint, its info, run.json as a dict) for resuming `app`'s run in
    `folder`; `report(message)` hears of each damaged checkpoint set aside. Raises
    RunFolderError when there is nothing of this app's run to resume."""
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            _usable_folder(folder)  # a file: the OSError says so
        raise RunFolderError(f"nothing to resume in {folder}: there is no such folder; start "
                             "the run without --resume (or check --out_dir)")
    run = existing_run(folder)
    if run is None:
        raise RunFolderError(f"nothing to resume in {folder}: it holds no run (no run.json, "
                             "no checkpoint); start the run without --resume")
    _refuse_live(run)
    if run.app and app and run.app != app:
        raise RunFolderError(
            f"{folder} holds {run.describe()}, not a {app} run; resume it with "
            f"python -m apps.{run.app} --resume --out_dir {folder}, or give {app} another "
            "--out_dir")
    _usable_folder(folder)
    path, set_aside = recover_checkpoints(os.path.join(folder, "checkpoints"))
    for damaged, moved, reason in set_aside:
        report(f"checkpoint {damaged} is damaged ({reason}); set aside as "
               f"{os.path.basename(moved)}")
    if path is None:
        raise RunFolderError(
            f"nothing to resume in {folder}: {run.describe()} has no intact checkpoint "
            "(stopped before its first one?); start afresh with --overwrite")
    info = checkpoint_info(path)
    manifest = read_manifest(folder)
    saved_app, saved_id = info.get("app"), info.get("run_id")
    if saved_app and app and saved_app != app:
        raise RunFolderError(f"{path} was written by {saved_app}, not {app}; resume it with "
                             f"python -m apps.{saved_app} --resume --out_dir {folder}")
    if manifest.get("run_id") and saved_id != manifest["run_id"]:
        raise RunFolderError(
            f"{path} belongs to run {saved_id or '(none recorded)'}, not to run "
            f"{manifest['run_id']} of {folder}/run.json: the folder mixes two runs; move "
            "one of them to its own folder")
    return path, info, manifest
