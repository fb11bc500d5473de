"""Password storage (argon2id at OWASP's floor or above) and the choice policy (NIST 800-63B)."""

from __future__ import annotations

import re
import time

import pytest

from courtyard.iam import (
    MIN_MEMORY_COST,
    MIN_PARALLELISM,
    MIN_TIME_COST,
    IamError,
    MalformedPasswordHash,
    PasswordHasher,
    PasswordPolicy,
    WeakHashParameters,
    WeakPassword,
)

PASSWORD = "correct horse battery staple"
_ENCODED = re.compile(
    r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
)


@pytest.fixture(scope="module")
def floor_hasher() -> PasswordHasher:
    return PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=MIN_TIME_COST)


@pytest.fixture(scope="module")
def stored(floor_hasher: PasswordHasher) -> str:
    return floor_hasher.hash(PASSWORD)


def test_default_hashes_are_argon2id_at_or_above_the_owasp_floor() -> None:
    encoded = PasswordHasher().hash(PASSWORD)
    match = _ENCODED.fullmatch(encoded)
    assert match is not None, encoded
    memory, passes, parallelism = (int(group) for group in match.groups())
    assert memory >= 19_456
    assert passes >= 2
    assert parallelism >= 1
    assert PASSWORD not in encoded


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"memory_cost": 19_455}, "memory_cost"),
        ({"time_cost": 1}, "time_cost"),
        ({"parallelism": 0}, "parallelism"),
    ],
)
def test_refuses_to_construct_below_the_floor(options: dict[str, int], parameter: str) -> None:
    with pytest.raises(WeakHashParameters) as caught:
        PasswordHasher(**options)
    assert caught.value.parameter == parameter
    assert "below the floor" in str(caught.value)
    assert isinstance(caught.value, IamError)


def test_right_password_verifies(floor_hasher: PasswordHasher, stored: str) -> None:
    assert floor_hasher.verify(stored, PASSWORD) is True


def test_wrong_password_is_false_not_an_error(floor_hasher: PasswordHasher, stored: str) -> None:
    assert floor_hasher.verify(stored, PASSWORD + "!") is False


def test_absurdly_long_input_is_false(floor_hasher: PasswordHasher, stored: str) -> None:
    assert floor_hasher.verify(stored, "x" * 100_000) is False


def test_unicode_is_normalized_before_hashing(floor_hasher: PasswordHasher) -> None:
    composed = "caf\u00e9 au lait, s'il vous pla\u00eet"
    decomposed = "cafe\u0301 au lait, s'il vous plai\u0302t"
    assert floor_hasher.verify(floor_hasher.hash(composed), decomposed) is True


@pytest.mark.parametrize(
    "damaged",
    [
        "",
        "not a hash",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        "$argon2id$v=99$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=19456,t=2,p=1$!!!$???",
    ],
)
def test_malformed_stored_hash_raises_a_clear_error(
    floor_hasher: PasswordHasher, damaged: str
) -> None:
    with pytest.raises(MalformedPasswordHash) as caught:
        floor_hasher.verify(damaged, PASSWORD)
    assert str(caught.value).startswith("stored password hash is malformed")
    assert PASSWORD not in str(caught.value)


def test_needs_rehash_when_parameters_rise(stored: str) -> None:
    assert PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=2).needs_rehash(stored) is False
    assert PasswordHasher(memory_cost=65_536, time_cost=2).needs_rehash(stored) is True
    assert PasswordHasher(memory_cost=MIN_MEMORY_COST, time_cost=3).needs_rehash(stored) is True
    assert PasswordHasher(time_cost=2, parallelism=2).needs_rehash(stored) is True


def test_needs_rehash_never_asks_to_go_down(stored: str) -> None:
    stronger = stored.replace("m=19456,t=2", "m=65536,t=4")
    assert PasswordHasher(time_cost=2).needs_rehash(stronger) is False


def test_needs_rehash_for_other_argon2_variants(stored: str) -> None:
    argon2i = stored.replace("$argon2id$", "$argon2i$")
    assert PasswordHasher(time_cost=2).needs_rehash(argon2i) is True


def test_needs_rehash_on_a_malformed_hash_raises() -> None:
    with pytest.raises(MalformedPasswordHash):
        PasswordHasher().needs_rehash("plain text")


def test_dummy_verify_does_real_argon2_work(floor_hasher: PasswordHasher) -> None:
    floor_hasher.dummy_verify()  # the first call also makes the dummy hash
    started = time.perf_counter()
    floor_hasher.dummy_verify()
    # 19 MiB of argon2id memory filled twice cannot take under a millisecond.
    assert time.perf_counter() - started > 0.001


def test_parameters_reports_the_configuration() -> None:
    parameters = PasswordHasher(memory_cost=32_768, time_cost=4, parallelism=2).parameters
    assert (parameters.memory_cost, parameters.time_cost, parameters.parallelism) == (
        32_768,
        4,
        2,
    )
    assert parameters.parallelism >= MIN_PARALLELISM


# --- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "eight ch",
        "Tr0ub4dor&3x",
        "\u5bc6\u7801\u5b89\u5168\u7b2c\u4e00\u4e00\u5929",
        "x" * 1023 + "y",
    ],
)
def test_policy_accepts_reasonable_passwords(password: str) -> None:
    PasswordPolicy().check(password)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 8 characters"),
        ("", "at least 8 characters"),
        ("x" * 1024 + "y", "at most 1024 characters"),
        ("password", "most commonly used"),
        ("PassWord1", "most commonly used"),
        ("Qwertyuiop", "most commonly used"),
        ("aaaaaaaaaaaa", "repeats a single character"),
    ],
)
def test_policy_refuses_weak_passwords(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword) as caught:
        PasswordPolicy().check(password)
    assert reason in str(caught.value)
    assert str(caught.value).startswith("password refused: ")


def test_policy_refuses_the_account_name() -> None:
    with pytest.raises(WeakPassword, match="account name"):
        PasswordPolicy().check("Alice.Example", context=["alice.example", ""])


def test_policy_counts_characters_after_normalization() -> None:
    # Eight user-perceived characters, nine code points before NFKC composes the accent.
    PasswordPolicy().check("cafe\u0301s!!!")
    with pytest.raises(WeakPassword):
        PasswordPolicy().check("cafe\u0301!!")
