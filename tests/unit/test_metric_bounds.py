"""A metric delta the fold could not add up is refused when the event is made.

2**31 deltas of at most 2**992 (a stream's most versions) still sum to a
finite float.
"""

from __future__ import annotations

import pytest

from eventstore import ValidationError
from eventstore.events import payloads


@pytest.mark.parametrize(
    "value", [2**992 + 1, -(2**992) - 1, 2**1023, 2**2000, 1e300, float("inf")]
)
def test_a_metric_beyond_the_exact_float_range_is_refused(value: float) -> None:
    with pytest.raises(ValidationError, match="metric 'x'"):
        payloads.build(payloads.ExecutionProgressed, step="s", metrics={"x": value})


@pytest.mark.parametrize(
    "value", [2**992, -(2**992), 2**60 + 1, 1e21, 0.5, -0.0, 5e-324, 0]
)
def test_a_metric_within_it_is_kept(value: float) -> None:
    event = payloads.build(payloads.ExecutionProgressed, step="s", metrics={"x": value})
    assert event.metrics == {"x": value}
