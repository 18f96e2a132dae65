"""The spec table's checks for every op (tests/needle/ops/op_specs.py): forward against
NumPy on contiguous and non-contiguous inputs, a float64 gradcheck, and a gradgradcheck for
the ops that gradient penalties differentiate twice."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.needle.ops.op_specs import SPECS, check_forward, check_gradients
from tests.strategies import grad_settings, layouts


def _spec_id(spec):
    return f"{spec.family}-{spec}"


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@given(data=st.data())
def test_forward(spec, device, data):
    case = data.draw(spec.cases, label="case")
    check_forward(spec, case, device, data.draw(st.sampled_from(["float32", "float64"])))


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@given(data=st.data())
def test_forward_noncontiguous(spec, device, data):
    case = data.draw(spec.cases, label="case")
    views = [data.draw(layouts(x.ndim), label="layout") for x in case.arrays]
    check_forward(spec, case, device, "float32", views)


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@grad_settings()
@given(data=st.data())
def test_gradcheck(spec, device, data):
    check_gradients(spec, data.draw(spec.cases, label="case"), device)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.gradgrad], ids=_spec_id)
@grad_settings(divisor=5)
@given(data=st.data())
def test_gradgradcheck(spec, device, data):
    check_gradients(spec, data.draw(spec.cases, label="case"), device, second_order=True)
