"""The training apps' command lines: `--help` shows the prog as typed, the module docstring
(the modes of a run folder) and every option with its default; the same option has the same
name in every app; console scripts exist for every app."""
import importlib
import subprocess
import sys

import pytest

from apps.cli import HelpFormatter

TRAINERS = ["train_dcgan", "train_cgan", "train_wgan_gp", "train_cyclegan"]
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


def test_help_runs_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "apps.train_dcgan", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "Modes of a run folder:" in result.stdout
    assert result.stdout.startswith("usage: python -m apps.train_dcgan ")


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
