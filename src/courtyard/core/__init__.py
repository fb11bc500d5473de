"""Vocabulary every layer shares: time, names and problem documents (stdlib only).

Error tree::

    CourtyardError
"""

from courtyard.core._clock import Clock, FakeClock, SystemClock
from courtyard.core._errors import CourtyardError
from courtyard.core._names import is_dns_label
from courtyard.core._problems import Problem, problem

__all__ = [
    "Clock",
    "CourtyardError",
    "FakeClock",
    "Problem",
    "SystemClock",
    "is_dns_label",
    "problem",
]
