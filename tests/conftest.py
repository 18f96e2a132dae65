"""Shared test configuration: hypothesis profile and the device fixture."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import needle as ndl  # noqa: E402
import pytest  # noqa: E402

# Every device-parameterised test runs on each of these. cpu() is the course's
# flat-memory device (composition path); cpu_numpy() the NumPy fast path.
DEVICES = [ndl.cpu_numpy(), ndl.cpu()]


@pytest.fixture(params=DEVICES, ids=str)
def device(request):
    return request.param
