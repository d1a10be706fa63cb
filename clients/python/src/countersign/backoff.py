"""How waits reconnect, and creates retry, after the server could not be reached or a connection broke."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields
from typing import Callable

__all__ = ["ReconnectPolicy", "backoff_delay"]


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff between attempts, in seconds.

    :raises ValueError: for a negative setting or a multiplier below 1
    """

    initial_delay: float = 0.25
    """Delay before the first retry."""
    max_delay: float = 10.0
    """The largest delay between two retries."""
    multiplier: float = 2.0
    """Each delay is this many times the previous one, up to ``max_delay``."""
    max_attempts: float = math.inf
    """Failed attempts in a row after which a wait gives up and raises the last error (an attempt that
    receives anything resets the count). By default a wait ends only by its ``timeout``."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"reconnect.{field.name} must be a number >= 0, got {value!r}")
        if self.multiplier < 1:
            raise ValueError("reconnect.multiplier must be at least 1")


def backoff_delay(
    attempt: int, policy: ReconnectPolicy, rand: Callable[[], float] = random.random
) -> float:
    """The delay before retry number ``attempt`` (1 for the first): exponential up to ``max_delay``, with
    "equal jitter" (a random point in the upper half), so that clients cut off together do not come back
    in step."""
    ceiling = min(policy.max_delay, policy.initial_delay * policy.multiplier ** max(0, attempt - 1))
    return ceiling / 2 + rand() * (ceiling / 2)
