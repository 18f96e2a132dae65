"""The apps' command line: one parser style, options checked where they enter, one ending.

    parser = AppParser("train_dcgan", __doc__)      # prog "python -m apps.train_dcgan"
    parser.add_argument("--lr", type=learning_rate, default=2e-4, help="...")
    args = parser.parse_args(argv)
    return finish("train_dcgan", lambda: trainer.train(), out_dir, debug=args.debug)

Options are checked at parse time by the `type=` functions below (ArgumentTypeError names
the value); a mistake prints one argparse-style line, `python -m apps.NAME: error: argument
--lr: ...`, and exits 2 before anything is loaded. `--help` shows the module docstring, every
option with its default, and the prog as it is typed.

`finish` runs the work and ends the way every app ends: a human last line (rounded figures,
the time taken, the output folder) on success; on a mistake a user can cause (USER_ERRORS:
missing or damaged files, a run folder in use, a diverged run, no GPU) one line `APP: what
went wrong ...` on stderr and exit 1, the traceback only under --debug; on SIGINT/SIGTERM the
line saying how to continue and exit 130. NumPy's overflow and invalid-value warnings are
silenced (without --debug): a diverging run is reported once, as TrainingDiverged. On
several ranks (--distributed) every rank runs the work and rank 0 alone speaks; an error on
one rank ends them all (needle.distributed.abort_on_error).
"""
import argparse
import math
import os
import shlex
import signal
import sys
import time

import numpy as np

import needle.distributed as dist
from gan import GANSetupError, RunFolderError, TrainingDiverged
from gan.checkpoint import latest_checkpoint
from gan.trainer import TrainingAborted, TrainingInterrupted
from needle.data.idx import DataFileError
from needle.serialization import CheckpointError

__all__ = ["AppParser", "finish", "final_line", "folder", "positive_int", "nonnegative_int",
           "learning_rate", "beta", "nonnegative_float", "int_in", "multiple_of",
           "DeviceUnavailable", "USER_ERRORS", "one_line"]


class DeviceUnavailable(SystemExit):
    """The --device asked for does not work on this machine; the message says what to do.
    A SystemExit, so an app that does not catch it still ends on that one line (exit 1)."""


USER_ERRORS = (GANSetupError, DataFileError, CheckpointError, RunFolderError,
               TrainingDiverged, DeviceUnavailable, OSError)


# ---- option types ------------------------------------------------------------------------
def _number(text, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                         f", got {text!r}") from None


def folder(text):
    """A path, not empty (an empty --out_dir or --data_dir is a slip, not the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a folder, got an empty path")
    return text


def positive_int(text):
    """An integer >= 1 (sizes, counts, intervals, epochs)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def nonnegative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def int_in(low, high):
    """An integer in [low, high]."""
    def parse(text):
        value = _number(text, int)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, "
                                             f"got {text}")
        return value
    parse.__name__ = f"integer from {low} to {high}"
    return parse


def float_in(low, high, high_included=False):
    """A number in [low, high) (or [low, high] with high_included)."""
    closing = "]" if high_included else ")"

    def parse(text):
        value = _number(text, float)
        inside = low <= value <= high if high_included else low <= value < high
        if not inside:  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}{closing}, got {text}")
        return value
    parse.__name__ = f"number in [{low}, {high}{closing}"
    return parse


def multiple_of(step):
    """A positive integer that `step` divides."""
    def parse(text):
        value = positive_int(text)
        if value % step:
            raise argparse.ArgumentTypeError(f"must be a multiple of {step}, got {text}")
        return value
    parse.__name__ = f"multiple of {step}"
    return parse


def learning_rate(text):
    """A finite number > 0."""
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"a learning rate must be a finite number > 0, "
                                         f"got {text}")
    return value


def beta(text):
    """Adam's beta: 0 <= beta < 1."""
    value = _number(text, float)
    if not 0 <= value < 1:  # NaN fails both comparisons
        raise argparse.ArgumentTypeError(f"an Adam beta must be in [0, 1), got {text}")
    return value


def nonnegative_float(text):
    """A finite number >= 0 (loss weights, penalties)."""
    value = _number(text, float)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


# ---- the parser --------------------------------------------------------------------------
class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written, and every option's default."""


class AppParser(argparse.ArgumentParser):
    """The parser of `python -m apps.<app>`: the module docstring as the help text, defaults
    shown, and a mistake reported on one line (exit 2)."""

    def __init__(self, app, doc, **kwargs):
        super().__init__(prog=f"python -m apps.{app}", description=doc,
                         formatter_class=HelpFormatter, **kwargs)
        self.app = app
        self.after_parsing = []  # (parser, args, argv) -> None, run in order by parse_args

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        for settle in self.after_parsing:
            settle(self, parsed, args)
        return parsed

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def given(self, argv=None):
        """The dests of the options given on the command line (not left to their default)."""
        defaults = {action: action.default for action in self._actions}
        parser_defaults = self._defaults  # set_defaults(): they would count as given too
        try:
            for action in self._actions:
                action.default = argparse.SUPPRESS
            self._defaults = {}
            named, _ = super().parse_known_args(argv)
        finally:
            for action, default in defaults.items():
                action.default = default
            self._defaults = parser_defaults
        return set(vars(named))


# ---- the ending ----------------------------------------------------------------------------
def one_line(error):
    """An exception's message on one line, without OSError's "[Errno N]" prefix."""
    text = error.strerror if isinstance(error, OSError) and error.strerror and \
        not error.filename else str(error)
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    return " ".join(text.split()) or type(error).__name__


def finish(app, work, out_dir, debug=False):
    """Run `work()` (the training) and end as every app ends (see the module docstring);
    returns its final record."""
    started = time.monotonic()
    resume = f"python -m apps.{app} --resume --out_dir {shlex.quote(str(out_dir))}"
    quiet = dist.rank() > 0  # rank 0 speaks for a --distributed run
    say = _silent if quiet else print
    if dist.world_size() > 1:
        resume = f"mpiexec -n {dist.world_size()} {resume} --distributed"
        work = _on_every_rank(work)
    try:
        if debug:
            record = work()
        else:  # NaN and overflow are the engine's to report (TrainingDiverged), in one line
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                record = work()
    except TrainingInterrupted as stop:
        _stopping()
        say(f"{app}: interrupted at step {stop.step}; continue with: {resume}",
            file=sys.stderr)
        raise SystemExit(130)
    except TrainingAborted as stop:
        _stopping()
        where = f"continue with: {resume}" if stop.checkpoint else "nothing to resume yet"
        say(f"{app}: {stop}; {where}", file=sys.stderr)
        raise SystemExit(130)
    except KeyboardInterrupt:  # before or after the loop (loading data, building models)
        _stopping()
        where = f"continue with: {resume}" if latest_checkpoint(
            os.path.join(str(out_dir), "checkpoints")) else "nothing was trained"
        say(f"{app}: interrupted; {where}", file=sys.stderr)
        raise SystemExit(130)
    except USER_ERRORS as error:
        if debug:
            raise
        if quiet:
            raise SystemExit(1)
        sys.exit(f"{app}: {one_line(error)}")
    say(final_line(app, record, out_dir, time.monotonic() - started))
    return record


def _on_every_rank(work):
    """`work` where a stop every rank reaches together (an interrupt, a divergence of the
    global figures) ends each rank in order and any other error ends the job at once."""
    def run():
        with dist.abort_on_error(collective=(TrainingInterrupted, TrainingDiverged)):
            return work()
    return run


def _silent(*args, **kwargs):
    """What ranks other than 0 print: nothing (rank 0 speaks for the run)."""


_FIGURES = (("d_loss", "D loss {}"), ("g_loss", "G loss {}"), ("d_real", "D(x) {}"),
            ("d_fake", "D(G(z)) {}"), ("fid", "FID {}"), ("digits_covered", "digits {}"),
            ("label_kept_G", "labels kept by G {}"), ("label_kept_F", "by F {}"),
            ("target_accuracy", "target accuracy {}"), ("source_accuracy", "source {}"))


def final_line(app, record, out_dir, seconds):
    """`APP: done in 4 min 11 s: step 937, epoch 1; D loss 0.35, G loss 2.29, ...; outputs in
    runs/dcgan (open report.html)`."""
    parts = []
    for key, label in _FIGURES:
        if isinstance(record.get(key), (int, float)):
            parts.append(label.format(_rounded(record[key])))
    if "modes_covered" in record:
        parts.append(f"modes covered {record['modes_covered']} of {record.get('n_modes')}")
    if "high_quality" in record:
        parts.append(f"high quality {100 * record['high_quality']:.1f}%")
    if record.get("warnings"):
        parts.append(f"{len(record['warnings'])} health warning(s) in metrics.jsonl")
    where = f"step {record.get('step', 0)}"
    if record.get("epoch"):  # epochs completed; none yet says nothing
        where += f", epoch {record['epoch']}"
    figures = f"; {', '.join(parts)}" if parts else ""
    return (f"{app}: done in {_duration(seconds)}: {where}{figures}; outputs in {out_dir} "
            f"(open report.html)")


def _stopping():
    """The process is ending: further Ctrl-C's would only interrupt the goodbye."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)


def _rounded(value):
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def _duration(seconds):
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
