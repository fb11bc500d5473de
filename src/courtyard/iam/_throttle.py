"""Slow down password guessing without letting an attacker lock the real user out.

Following the OWASP Authentication Cheat Sheet ("Protect Against Automated Attacks") and
ASVS V2.2.1: failures are counted per account and per client address, and each counter
imposes a delay that doubles from ``base_delay`` up to ``max_delay``. The account counter stops
one password being guessed from many addresses; the client counter stops one address spraying
many accounts. There is no permanent lockout: once the delay passes anyone may try again, and
a success clears the account's counter. Decisions read an injected clock and do no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from courtyard.core import Clock


@dataclass(frozen=True)
class ThrottlePolicy:
    """How hard to throttle; the defaults follow the issue (1 s doubling, capped at 15 min).

    ``*_free_failures`` are allowed before any delay (a shared office NAT makes the client
    allowance larger). A counter idle for ``forget_after`` seconds starts again from zero, and
    at most ``max_keys`` accounts and as many clients are tracked, the least recently failed
    dropped first, so memory stays bounded.
    """

    base_delay: float = 1.0
    max_delay: float = 900.0
    account_free_failures: int = 3
    client_free_failures: int = 10
    forget_after: float = 86_400.0
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        if not 0 < self.base_delay <= self.max_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        if self.account_free_failures < 0 or self.client_free_failures < 0:
            raise ValueError("free failures must not be negative")
        if self.forget_after <= self.max_delay:
            raise ValueError("forget_after must exceed max_delay, or the cap never applies")
        if self.max_keys < 1:
            raise ValueError("max_keys must be at least 1")

    def delay_after(self, failures: int, free_failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures on one counter."""
        excess = failures - free_failures
        if excess <= 0:
            return 0.0
        return min(self.base_delay * 2.0 ** min(excess - 1, 64), self.max_delay)


@dataclass(frozen=True)
class Decision:
    """Whether an attempt may go ahead now, and if not, in how many seconds it may."""

    allowed: bool
    retry_after: float


@dataclass
class _Counter:
    failures: int
    last_failure: float


class LoginThrottle:
    """Per-account and per-client failure counters with growing delays, in memory.

    Call :meth:`check` before verifying a password; when it refuses, answer with its
    ``retry_after`` without verifying and without recording a failure (otherwise an attacker
    could push the real user's delay up forever). Then call :meth:`record_failure` or
    :meth:`record_success` with the outcome.
    """

    def __init__(self, clock: Clock, policy: ThrottlePolicy | None = None) -> None:
        self._clock = clock
        self._policy = policy or ThrottlePolicy()
        # Dicts keep insertion order; a counter is re-inserted on each failure, so the
        # first entry is always the one that failed longest ago.
        self._accounts: dict[str, _Counter] = {}
        self._clients: dict[str, _Counter] = {}

    @property
    def tracked_keys(self) -> int:
        """How many account and client counters are held."""
        return len(self._accounts) + len(self._clients)

    def check(self, account: str, client: str) -> Decision:
        """Whether ``client`` may try a password for ``account`` now."""
        now = self._clock.monotonic()
        policy = self._policy
        wait = max(
            self._wait(self._accounts, _account_key(account), policy.account_free_failures, now),
            self._wait(self._clients, _client_key(client), policy.client_free_failures, now),
        )
        return Decision(allowed=wait <= 0.0, retry_after=max(wait, 0.0))

    def record_failure(self, account: str, client: str) -> None:
        """Count a wrong password against both the account and the client."""
        now = self._clock.monotonic()
        self._bump(self._accounts, _account_key(account), now)
        self._bump(self._clients, _client_key(client), now)

    def record_success(self, account: str, client: str) -> None:
        """Clear the account's counter after a successful sign-in.

        The client's counter stays: otherwise an attacker could sign in to an account of
        their own between guesses and wipe their address's record each time.
        """
        del client
        self._accounts.pop(_account_key(account), None)

    def _wait(self, table: dict[str, _Counter], key: str, free: int, now: float) -> float:
        counter = table.get(key)
        if counter is None:
            return 0.0
        if now - counter.last_failure >= self._policy.forget_after:
            del table[key]
            return 0.0
        delay = self._policy.delay_after(counter.failures, free)
        return counter.last_failure + delay - now

    def _bump(self, table: dict[str, _Counter], key: str, now: float) -> None:
        policy = self._policy
        counter = table.pop(key, None)
        if counter is None or now - counter.last_failure >= policy.forget_after:
            counter = _Counter(failures=0, last_failure=now)
        counter.failures += 1
        counter.last_failure = now
        table[key] = counter
        # Oldest first: drop counters gone quiet, then the least recent while over the cap.
        while table:
            oldest_key = next(iter(table))
            oldest = table[oldest_key]
            if now - oldest.last_failure < policy.forget_after and len(table) <= policy.max_keys:
                break
            del table[oldest_key]


def _account_key(account: str) -> str:
    # Case variants of one name must share a counter, or "Alice" and "alice" double the budget.
    return account.strip().casefold()


def _client_key(client: str) -> str:
    # One IPv6 host usually owns a whole /64; counting per address would give it 2^64 budgets.
    try:
        address = ipaddress.ip_address(client.strip())
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
