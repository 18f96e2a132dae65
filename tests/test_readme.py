"""README.md's Python snippets run as written and print what the README says they print.

Every ```python block runs in its own interpreter (the default NDArray flavour, warnings as
errors) with a temporary folder as the working directory, so the files it writes land there.
A print whose line ends in a comment, or that is followed by comment-only lines, shows its
output there; the output must match it exactly ("..." in the comment matches anything).
"""
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
TOURS = ("A quick tour of needle", "A quick tour of gan")

# Runs the block with a print that also reports the block line it was called from.
RUNNER = r'''
import builtins, io, json, sys
source = open(sys.argv[1]).read()
real_print = builtins.print

def print(*args, **kwargs):
    kwargs.pop("file", None)
    buffer = io.StringIO()
    real_print(*args, file=buffer, **kwargs)
    line = sys._getframe(1).f_lineno
    sys.__stdout__.write(json.dumps({"line": line, "text": buffer.getvalue()}) + "\n")

exec(compile(source, "README block", "exec"), {"__name__": "__main__", "print": print})
'''


def python_blocks(text):
    """[(section heading, first line number in README, code)] of every ```python block."""
    blocks, heading, code, start = [], None, None, None
    for number, line in enumerate(text.splitlines(), 1):
        if code is None:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            elif line.strip() == "```python":
                code, start = [], number + 1
        elif line.strip() == "```":
            blocks.append((heading, start, "\n".join(code) + "\n"))
            code = None
        else:
            code.append(line)
    return blocks


def shown_outputs(code):
    """{(first line, last line) of a print statement: the output its comments show}."""
    tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    comments = {t.start[0]: t.string[1:].strip() for t in tokens
                if t.type == tokenize.COMMENT}
    code_lines = {t.start[0] for t in tokens if t.type not in (
        tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
        tokenize.ENDMARKER)}
    shown = {}
    for i, token in enumerate(tokens):
        starts_statement = i == 0 or tokens[i - 1].type in (
            tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
        if not (token.type == tokenize.NAME and token.string == "print" and starts_statement):
            continue
        end = next(t for t in tokens[i:] if t.type == tokenize.NEWLINE).start[0]
        if end in comments:  # print(...)   # output
            shown[(token.start[0], end)] = comments[end]
            continue
        following, line = [], end + 1  # print(...) then "# output" lines
        while line in comments and line not in code_lines:
            following.append(comments[line])
            line += 1
        if following:
            shown[(token.start[0], end)] = "\n".join(following)
    return shown


def matches(shown, printed):
    pattern = ".*?".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, printed, flags=re.DOTALL) is not None


def run_block(code, folder):
    """[(line, text)] of the block's prints; AssertionError with the traceback on failure."""
    script = folder / "block.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=ROOT, NEEDLE_BACKEND="nd")
    result = subprocess.run([sys.executable, "-W", "error", "-c", RUNNER, str(script)],
                            cwd=folder, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, f"the snippet failed:\n{result.stderr}"
    return [(record["line"], record["text"]) for record in map(json.loads,
                                                               result.stdout.splitlines())]


def mismatches(code, folder):
    """One message per shown output that the run did not print."""
    printed = run_block(code, folder)
    problems = []
    for (first, last), shown in shown_outputs(code).items():
        text = "".join(t for line, t in printed if first <= line <= last).rstrip("\n")
        if not matches(shown, text):
            problems.append(f"block line {first}: the README shows {shown!r}, it printed "
                            f"{text!r}")
    return problems


with open(README, encoding="utf-8") as readme:
    BLOCKS = python_blocks(readme.read())


def test_the_tours_have_snippets():
    headings = [heading for heading, _, _ in BLOCKS]
    assert all(tour in headings for tour in TOURS), headings
    assert all(shown_outputs(code) for heading, _, code in BLOCKS if heading != TOURS[1])


@pytest.mark.parametrize("heading, start, code", BLOCKS,
                         ids=[f"line{start}" for _, start, _ in BLOCKS])
def test_snippet_runs_and_prints_what_the_readme_shows(tmp_path, heading, start, code):
    assert mismatches(code, tmp_path) == [], f"README.md line {start} ({heading})"


# ---- the checker itself ------------------------------------------------------------------
def test_a_wrong_shown_output_is_caught(tmp_path):
    code = ("x = 2\n"
            "print(x + 1)   # 3\n"
            "print(x * 10)  # 21\n"
            "print([x] * 3)\n"
            "# [2, ..., 2]\n"
            "print('a', x)\n"
            "# b 2\n")
    problems = mismatches(code, tmp_path)
    assert problems == ["block line 3: the README shows '21', it printed '20'",
                        "block line 6: the README shows 'b 2', it printed 'a 2'"]


def test_a_snippet_that_fails_is_caught(tmp_path):
    with pytest.raises(AssertionError, match="NameError: name 'real' is not defined"):
        mismatches("print(real)  # 1\n", tmp_path)


def test_files_a_snippet_writes_land_in_its_folder(tmp_path):
    assert run_block("open('model.safetensors', 'w').write('x')\n", tmp_path) == []
    assert (tmp_path / "model.safetensors").read_text() == "x"
