"""An all-zero footprint or weights matrix is a user error naming the argument (issue 21,
"Crashes"), before anything is computed or created."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline
from pipeline.errors import PipelineError


@pytest.mark.parametrize("reduce", ["min", "max", "sum", "mean"])
def test_all_zero_footprint_is_refused_naming_it(reduce):
    with pytest.raises(PipelineError, match="footprint") as e:
        pipeline.window_reduce("a", {"a": np.arange(20.0).reshape(4, 5)}, footprint=np.zeros((3, 3), bool), reduce=reduce)
    assert not isinstance(e.value, AssertionError)


@pytest.mark.parametrize("reduce", ["min", "max"])
def test_all_zero_weights_are_refused_naming_them(reduce):
    with pytest.raises(PipelineError, match="weights"):
        pipeline.window_reduce("a", {"a": np.arange(20).reshape(4, 5)}, weights=[[0, 0], [0, 0]], reduce=reduce)
