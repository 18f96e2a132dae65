"""CI's skip policy: under CI=true a skip that hides a check CI must run is an error.

What counts, decided from the exception that skipped, never from its message:

- a skip raised inside `pytest.importorskip` (recognised by the function's code object in the
  traceback), whatever the module: PyTorch, the native `ndarray_backend_cpu`, pybind11. CI
  installs every module the tests import (.ci/run), so such a skip means it did not;
- a `NeedsBuild` skip (`skip_unbuilt(...)`): a native module, or the CMake toolchain that
  builds it, is missing (hw0's simple_ml_ext).

Still skips: tests marked `gpu` (whatever raised their skip), and every other skip: skipif
marks such as the course-style "No GPU" device parameters, the bad-input catalogue's root-only
chmod cases, the NumPy flavour's `nd_only` tests.

The end of every run lists how many tests skipped and why (reasons with counts). The
conftest imports these hooks; `pytest -p tests.support.ci_skips` loads them elsewhere.
"""
import collections
import os

import pytest

__all__ = ["NeedsBuild", "skip_unbuilt", "ci_enforced"]


class NeedsBuild(pytest.skip.Exception):
    """A skip because a native module, or the toolchain that builds it, is missing."""


# As pytest does for Skipped: reports then read "NeedsBuild: reason", not a dotted path.
NeedsBuild.__module__ = "builtins"


def skip_unbuilt(reason):
    """Skip the running test for a missing native build; an error under CI=true."""
    __tracebackhide__ = True  # the skip is reported at the caller's line
    raise NeedsBuild(reason)


def ci_enforced():
    """True when the environment says CI=true (read per report, not at import)."""
    return os.environ.get("CI", "").lower() == "true"


def _importorskip_module(excinfo):
    """The module name pytest.importorskip was asked for, if it raised this skip; else None."""
    code = pytest.importorskip.__code__
    tb = excinfo.tb
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return str(tb.tb_frame.f_locals.get("modname", "<unknown module>"))
        tb = tb.tb_next
    return None


def _forbidden(node, excinfo):
    """Why this skip must fail under CI=true, or None when it may stay a skip."""
    if node.get_closest_marker("gpu") is not None:
        return None
    module = _importorskip_module(excinfo)
    if module is not None:
        return (f"pytest.importorskip({module!r}) skipped ({excinfo.value.msg}); .ci/run "
                "installs torch==2.13.0 and pybind11 and builds the native backend with "
                "NEEDLE_NATIVE=1")
    if isinstance(excinfo.value, NeedsBuild):
        return (f"a native build is missing ({excinfo.value.msg}); .ci/run builds it with "
                "CMake")
    return None


def _fail(report, why):
    report.outcome = "failed"
    report.longrepr = f"CI=true: this skip is an error: {why}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (ci_enforced() and report.skipped and not hasattr(report, "wasxfail")
            and call.excinfo is not None):
        why = _forbidden(item, call.excinfo)
        if why:
            _fail(report, why)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if ci_enforced() and report.skipped:
        call = getattr(report, "call", None)  # pytest keeps the CallInfo on the report
        if call is None or call.excinfo is None:
            _fail(report, "cannot tell why this module skipped (no exception on the report)")
            return
        why = _forbidden(collector, call.excinfo)
        if why:
            _fail(report, why)


def _reason(report):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    counts = collections.Counter(_reason(report) for report in skipped)
    terminalreporter.section(f"{len(skipped)} skipped, by reason")
    for reason, count in counts.most_common():
        terminalreporter.line(f"{count:5d}  {reason}")
