"""The apps' command lines: `--help` shows the prog as typed, the whole module docstring (the
modes explained) and every option with its default, for the trainers and for sample,
evaluate, translate and train_classifier; the same option has the same name in every
trainer; console scripts exist for every app."""
import argparse
import importlib
import subprocess
import sys

import pytest

from apps.cli import HelpFormatter

TRAINERS = ["train_dcgan", "train_cgan", "train_wgan_gp", "train_cyclegan", "train_pix2pix",
            "train_aae", "train_stylegan"]
SHARED = ["--data_dir", "--out_dir", "--epochs", "--max_steps", "--more_epochs", "--resume",
          "--overwrite", "--batch_size", "--seed", "--device", "--checkpoint_every",
          "--log_every", "--sample_every", "--limit", "--no_health", "--tensorboard",
          "--debug", "--no_progress", "--dry_run", "--lr", "--d_lr", "--g_lr", "--beta1",
          "--beta2", "--num_samples", "--evaluate", "--eval_samples", "--width"]


def parser_of(app):
    return importlib.import_module(f"apps.{app}").build_parser()


@pytest.mark.parametrize("app", TRAINERS)
def test_help_shows_the_prog_the_docstring_and_every_default(app):
    parser = parser_of(app)
    text = parser.format_help()
    assert parser.prog == f"python -m apps.{app}"
    assert text.startswith(f"usage: python -m apps.{app} ")
    doc = importlib.import_module(f"apps.{app}").__doc__
    assert parser.description == doc and doc.split("\n\n")[1].splitlines()[0] in text
    assert "--resume" in doc and "--overwrite" in doc and "--dry_run" in doc  # the modes
    formatter = HelpFormatter(parser.prog)
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{app}: {action.option_strings} has no help"
        shown = formatter._get_help_string(action)
        assert "default" in shown, f"{app}: {action.option_strings} shows no default"


@pytest.mark.parametrize("app", TRAINERS)
def test_the_shared_options_have_the_same_names(app):
    names = {name for action in parser_of(app)._actions for name in action.option_strings}
    assert set(SHARED) <= names, sorted(set(SHARED) - names)


# Each app's explanation of its modes, as its docstring words it.
MODES = {"train_dcgan": "Modes of a run folder:", "train_cgan": "--resume",
         "train_wgan_gp": "Modes of a run folder:", "train_cyclegan": "Modes of a run folder:",
         "sample": "interpolate  --rows random pairs (z0, z1)",
         "evaluate": "--real scores",
         "translate": "translated by G (AtoB, domain A to B) or F (BtoA)",
         "train_classifier": "is replaced only when asked for by name",
         "train_dann": "Modes of a run folder:",
         "probe_discriminator": "Radford et al. (2016, sec. 5.1)",
         "train_pix2pix": "Modes of a run folder:", "train_aae": "Modes of a run folder:",
         "train_stylegan": "Modes of a run folder:"}
APPS = sorted(MODES)


def _shown_default(action):
    """The default as --help words it: argparse's "(default: X)", or the help's own words
    where it hides the value (%(default).0s)."""
    help_text = action.help or ""
    if "%(default)" in help_text:
        return "default" if "default" in help_text.replace("%(default)", "") else None
    return f"(default: {action.default})"


@pytest.mark.parametrize("app", APPS)
def test_every_apps_help_shows_the_prog_the_whole_docstring_and_its_defaults(app):
    """`python -m apps.NAME --help`, run as a user runs it: the prog as typed, every line of
    the module docstring (the modes explained), and a default for every option with one."""
    result = subprocess.run([sys.executable, "-m", f"apps.{app}", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"usage: python -m apps.{app} ")
    assert MODES[app] in text
    doc = importlib.import_module(f"apps.{app}").__doc__
    for line in doc.strip().splitlines():
        assert line.rstrip() in text, f"{app}: docstring line missing from --help: {line!r}"
    flat = "".join(text.split())  # argparse wraps lines at spaces and hyphens
    for action in parser_of(app)._actions:
        if action.dest == "help" or action.default in (None, False, argparse.SUPPRESS):
            continue
        assert action.help, f"{app}: {action.option_strings} has no help"
        shown = _shown_default(action)
        assert shown and "".join(shown.split()) in flat, \
            f"{app}: {action.option_strings} does not show its default {action.default!r}"


def test_every_app_has_a_console_script():
    """setup.py's APPS (needle-NAME console scripts) lists every apps module with a
    main(argv=None), and each of them has one."""
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "setup.py").read_text())
    (apps,) = [ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and node.targets[0].id == "APPS"]
    with_main = sorted(path.stem for path in (root / "apps").glob("*.py")
                       if "\ndef main(argv=None):" in path.read_text())
    assert sorted(apps) == with_main
    for app in apps:
        assert callable(importlib.import_module(f"apps.{app}").main)
