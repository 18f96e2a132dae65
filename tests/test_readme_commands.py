"""Every `python -m apps.X` / `python -m benchmarks.X` command the README shows uses only
options its program takes: a user who copies one must not meet "unrecognized arguments"."""
import argparse
import importlib
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
# a command runs to the end of its inline code span or of its line
COMMAND = re.compile(r"python3? -m ((?:apps|benchmarks)\.[a-z_0-9]+)([^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9_-]*)")


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


def readme_commands():
    with open(README, encoding="utf-8") as readme:
        text = readme.read()
    commands = {}
    for module, rest in COMMAND.findall(text):
        commands.setdefault(module, set()).update(OPTION.findall(rest))
    return sorted(commands.items())


def parser_of(module_name, monkeypatch):
    """The ArgumentParser the program's main builds, caught at its first parse."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    module = importlib.import_module(module_name)
    try:
        module.main([])
    except _Captured as caught:
        return caught.parser
    raise AssertionError(f"{module_name}.main([]) returned without parsing arguments")


def test_the_readme_shows_commands():
    modules = dict(readme_commands())
    assert "apps.train_dcgan" in modules and len(modules) >= 10


@pytest.mark.parametrize("module_name,options", readme_commands())
def test_readme_options_exist(module_name, options, monkeypatch):
    known = set(parser_of(module_name, monkeypatch)._option_string_actions)
    unknown = sorted(options - known)
    assert not unknown, f"README shows `python -m {module_name}` with {unknown}, which it " \
                        f"does not take"


def test_an_unknown_option_is_caught(monkeypatch):
    known = set(parser_of("apps.train_dcgan", monkeypatch)._option_string_actions)
    assert "--epochs" in known and "--no_such_option" not in known
