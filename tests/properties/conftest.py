"""Hypothesis profiles: `default` (every test run, deterministic, well under a
minute) and `long` (EVENTSTORE_HYPOTHESIS_PROFILE=long: 10,000 examples per
test, random seeds, for a search before a release)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# One store serves every example of a test (a fixture of the test function),
# and some examples are large on purpose (a 20 MB string).
settings.register_profile(
    "shared",
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile(
    "default", settings.get_profile("shared"), max_examples=150, derandomize=True
)
settings.register_profile("long", settings.get_profile("shared"), max_examples=10_000)
settings.load_profile(os.environ.get("EVENTSTORE_HYPOTHESIS_PROFILE", "default"))
