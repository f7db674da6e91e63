"""Shared test set-up: the hypothesis profiles and a count of property cases in the summary."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI explores the same examples every run (a landing never hinges on a lucky draw); `make fuzz` and
# HYPOTHESIS_PROFILE=thorough explore new ones.
settings.register_profile(
    "ci", deadline=None, print_blob=True, max_examples=40, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("dev", deadline=None, max_examples=15)
settings.register_profile("thorough", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Two cores: keep each test process to one or two threads so multi-process tests don't crawl.
torch.set_num_threads(int(os.environ.get("SOFTSPIKE_TEST_THREADS", "2")))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors run faster on one thread: a second only adds contention on 2 shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    try:
        from _hypothesis_pytestplugin import STATS_KEY
    except ImportError:
        return
    tests = cases = 0
    for reports in terminalreporter.stats.values():
        for report in reports:
            stats = getattr(report, "__dict__", {}).get(STATS_KEY)
            if stats:
                tests += 1
                cases += sum(int(n) for n in re.findall(r"(\d+) passing", stats))
    if tests:
        terminalreporter.write_line(f"hypothesis: {cases} property cases passed across {tests} property tests")
