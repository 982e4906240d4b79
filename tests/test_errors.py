import math

import pytest
import torch

from pdviz import errors as E


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "3", None, True])
def test_check_positive_rejects(value):
    with pytest.raises(E.InvalidArgumentError, match="step_size"):
        E.check_positive("step_size", value)


def test_check_positive_integer():
    assert E.check_positive("n", 5, integer=True) == 5
    with pytest.raises(E.InvalidArgumentError, match="integer"):
        E.check_positive("n", 2.5, integer=True)


def test_check_choice_lists_names():
    with pytest.raises(E.UnknownNameError, match="valid names: a, b"):
        E.check_choice("dataset", "c", ["b", "a"])
    assert issubclass(E.UnknownNameError, ValueError)


def test_check_points_shape_and_finite():
    E.check_points("x", torch.zeros(3, 2), dim=2)
    with pytest.raises(E.InvalidArgumentError, match=r"shape \[n, 2\]"):
        E.check_points("x", torch.zeros(3, 3), dim=2)
    x = torch.zeros(3, 2)
    x[1, 0] = float("nan")
    with pytest.raises(E.InvalidArgumentError, match="row 1"):
        E.check_points("x", x, dim=2)


def test_divergence_error_message():
    err = E.DivergenceError("particle positions", 17, "reduce step_size", detail="3 non-finite values")
    assert isinstance(err, RuntimeError)
    assert err.iteration == 17
    assert "iteration 17" in str(err) and "reduce step_size" in str(err)
    with pytest.raises(E.DivergenceError, match="bound"):
        E.check_finite_state("positions", torch.tensor([1e6]), 3, bound=1e4)
