"""CI's skip policy (tests/support/ci_skips.py), run on small test files in a subprocess."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = '''
import sys
import pytest
from tests.support.ci_skips import skip_unbuilt


def test_needs_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # torch cannot be imported here
    torch = pytest.importorskip("torch", reason="a renamed reason")


def test_needs_a_native_build():
    skip_unbuilt("src/simple_ml_ext is not built")


@pytest.mark.gpu
def test_gpu_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    pytest.importorskip("cupy")


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=pytest.mark.skipif(
    True, reason="No GPU"))])
def test_course_style_gpu_parameter(device):
    pass


def test_runs():
    pass
'''

MODULE_LEVEL = '''
import sys
sys.modules["torch"] = None
import pytest
torch = pytest.importorskip("torch")


def test_never_collected():
    pass
'''


def run_cases(tmp_path, ci, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    env = dict(os.environ, PYTHONPATH=ROOT, CI="true" if ci else "false")
    xml = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.ci_skips", "-p",
         "no:cacheprovider", f"--junitxml={xml}", *files],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name")] = kinds[0] if kinds else "passed"
    return done, outcomes


@pytest.mark.parametrize("ci", [True, False], ids=["CI=true", "CI unset"])
def test_missing_torch_or_build_fails_under_ci_and_gpu_skips_stay_skips(tmp_path, ci):
    done, outcomes = run_cases(tmp_path, ci, {"test_cases.py": CASES})
    needs = "failure" if ci else "skipped"
    assert outcomes == {"test_needs_torch": needs, "test_needs_a_native_build": needs,
                        "test_gpu_only": "skipped",
                        "test_course_style_gpu_parameter[cuda]": "skipped",
                        "test_runs": "passed"}, done.stdout + done.stderr
    assert done.returncode == (1 if ci else 0), done.stdout
    if ci:
        assert "CI=true: this skip is an error: pytest.importorskip('torch')" in done.stdout
    # the closing summary: how many skipped, and why
    skipped = 2 if ci else 4
    assert f"{skipped} skipped, by reason" in done.stdout
    assert "    1  No GPU" in done.stdout


def test_module_level_importorskip_is_a_collection_error_under_ci(tmp_path):
    files = {"test_module.py": MODULE_LEVEL, "test_other.py": "def test_runs():\n    pass\n"}
    done, _ = run_cases(tmp_path, True, files)
    assert done.returncode == 2, done.stdout  # pytest stops on a collection error
    assert "ERROR test_module.py - CI=true: this skip is an error: pytest.importorskip(" \
        "'torch')" in done.stdout, done.stdout
    done, outcomes = run_cases(tmp_path, False, files)
    assert outcomes == {"test_runs": "passed", "test_module": "skipped"}, done.stdout
    assert done.returncode == 0
    assert "1 passed, 1 skipped" in done.stdout
