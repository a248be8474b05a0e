"""The password rules (Spryker's codes 418-422, common and personal-data checks) and argon2id hashing."""

from __future__ import annotations

import random
import string
from typing import Any

import bcrypt
import pytest

from accounts.passwords import (
    COMMON_PASSWORD,
    INVALID_CHARACTER_SET,
    REPEATED_CHARACTERS,
    SIMILAR_TO_PERSONAL_DATA,
    TOO_LONG,
    TOO_SHORT,
    PasswordHasher,
    PasswordPolicy,
    PolicyViolation,
)
from accounts.settings import Settings

JOHN = ["john.smith@example.com", "john.smith", "John", "Smith"]
STRONG_12 = "Vq8#nT2!pLm4"
RANDOM_128 = "".join(random.Random(20240607).choices(string.ascii_letters + string.digits + "!#$%&*+-=?@^_~", k=128))


@pytest.fixture
def policy() -> PasswordPolicy:
    return PasswordPolicy()


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


# --- acceptable passwords ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        STRONG_12,
        "mein Hund heißt Bello und ist 7",
        "Ärger über 7 Brücken!",
        "purple-monkey-dishwasher-lamp",
        RANDOM_128,
    ],
)
def test_strong_passwords_pass(policy: PasswordPolicy, password: str) -> None:
    assert policy.violations(password) == []
    assert policy.violations(password, user_inputs=JOHN) == []


def test_violation_carries_code_and_spryker_text() -> None:
    assert TOO_SHORT == PolicyViolation(code="418", detail="The password is too short.")
    assert TOO_LONG == PolicyViolation(code="419", detail="The password is too long.")
    assert INVALID_CHARACTER_SET == PolicyViolation(code="420", detail="The password character set is invalid.")
    assert REPEATED_CHARACTERS == PolicyViolation(
        code="421", detail="The password contains sequence of the same character."
    )
    assert COMMON_PASSWORD == PolicyViolation(code="422", detail="The password is listed as common.")
    assert SIMILAR_TO_PERSONAL_DATA.code == "422"


# --- length: 418, 419 ----------------------------------------------------------------------------


def test_exactly_min_length_passes_one_less_is_too_short(policy: PasswordPolicy) -> None:
    assert policy.violations(STRONG_12) == []
    assert policy.violations(STRONG_12[:11]) == [TOO_SHORT]
    assert policy.violations("") == [TOO_SHORT]


def test_exactly_max_length_passes_one_more_is_too_long(policy: PasswordPolicy) -> None:
    assert len(RANDOM_128) == 128
    assert policy.violations(RANDOM_128) == []
    assert policy.violations(RANDOM_128 + "x") == [TOO_LONG]


def test_too_long_is_reported_alone() -> None:
    # It is also repeated, denied, common and personal data: only 419 comes back.
    strict = PasswordPolicy(require_character_set=True, deny_list=["a" * 129])
    assert strict.violations("a" * 129, user_inputs=["a" * 129]) == [TOO_LONG]


def test_megabyte_password_is_one_too_long_violation(policy: PasswordPolicy) -> None:
    megabyte = "password" * (1024 * 1024 // 8)
    assert policy.violations(megabyte, user_inputs=JOHN) == [TOO_LONG]


def test_custom_lengths() -> None:
    policy = PasswordPolicy(min_length=8, max_length=16)
    assert policy.violations("Vq8#nT2!") == []
    assert policy.violations("Vq8#nT2") == [TOO_SHORT]
    assert policy.violations("Vq8#nT2!pLm4xQ7z") == []
    assert policy.violations("Vq8#nT2!pLm4xQ7z9") == [TOO_LONG]


@pytest.mark.parametrize(
    "arguments",
    [
        {"min_length": 0},
        {"min_length": 20, "max_length": 19},
        {"max_repeated_characters": -1},
        {"max_repeated_characters": 1},
    ],
)
def test_nonsensical_configuration_is_refused(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PasswordPolicy(**arguments)


# --- character set: 420 --------------------------------------------------------------------------


def test_character_set_is_not_required_by_default(policy: PasswordPolicy) -> None:
    assert policy.violations("correct horse battery staple") == []


@pytest.mark.parametrize(
    "password",
    ["VQ8#NT2!PLM4", "vq8#nt2!plm4", "Vqx#nTy!pLmz", "Vq8xnT2ypLm4"],
    ids=["no lower", "no upper", "no digit", "no special"],
)
def test_character_set_needs_lower_upper_digit_and_special(password: str) -> None:
    policy = PasswordPolicy(require_character_set=True)
    assert policy.violations(password) == [INVALID_CHARACTER_SET]
    assert policy.violations(STRONG_12) == []
    assert policy.violations("Ärger über 7 Brücken") == []  # the spaces are special characters


# --- repeated characters: 421 --------------------------------------------------------------------


def test_two_identical_characters_pass_three_do_not_as_in_spryker(policy: PasswordPolicy) -> None:
    # Spryker's demo shop: sequence limit 3, and its acceptance test refuses "qwertyuI1!eee" with 421
    assert policy.violations("qwertyuI1!eee") == [REPEATED_CHARACTERS]
    assert policy.violations("Vq8#aa!pLm4x") == []
    assert policy.violations("Vq8#aaa!pLm4") == [REPEATED_CHARACTERS]
    assert policy.violations("Vq8#nT2!pLm4" + "444") == [REPEATED_CHARACTERS]


def test_repeated_character_limit_is_configurable() -> None:
    assert PasswordPolicy(max_repeated_characters=2).violations("Vq8#aa!pLm4x") == [REPEATED_CHARACTERS]
    assert PasswordPolicy(max_repeated_characters=4).violations("Vq8#aaa!pLm4") == []
    assert PasswordPolicy(max_repeated_characters=0).violations("Vq8#aaaaaaa!pLm4") == []


# --- deny list and common passwords: 422 ---------------------------------------------------------


def test_deny_list_matches_whole_password_ignoring_case() -> None:
    policy = PasswordPolicy(deny_list=["ShopName-2024!"], check_common=False)
    assert policy.violations("ShopName-2024!") == [COMMON_PASSWORD]
    assert policy.violations("shopname-2024!") == [COMMON_PASSWORD]
    assert policy.violations("SHOPNAME-2024!") == [COMMON_PASSWORD]
    assert policy.violations("ShopName-2024!x") == []


@pytest.mark.parametrize(
    "password",
    [
        # in the breach list as they are, in any case
        "password1234",
        "PASSWORD1234",
        "qwertyuiop123",
        "1q2w3e4r5t6y",
        # a breached password or a word with trivial decoration
        "iloveyou2024!",
        "P@ssw0rd1234",
        "p4$$w0rd2024!",
        "password12345!",
        "qwertyuiop1234",
        "Football#2023",
        "drowssap12345",
        "trustno1trustno1",
        "abcdefghijkl",
        # long, and still nothing but repeats and runs
        "password" * 16,
        "0123456789" * 12,
    ],
)
def test_common_and_breached_passwords_are_refused(policy: PasswordPolicy, password: str) -> None:
    assert policy.violations(password) == [COMMON_PASSWORD]


def test_common_check_can_be_turned_off() -> None:
    assert PasswordPolicy(check_common=False).violations("password1234") == []


def test_short_random_password_is_not_common_just_for_being_short() -> None:
    # Few guesses because of its length alone: that is 418's business, not "listed as common".
    assert PasswordPolicy(min_length=8).violations("kT7#pQ2x") == []


# --- similarity to the customer's own data: 422 --------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "johnsmith-Vq8#nT",  # email local part without its dot
        "sMiTh-Vq8#nT2!",  # last name, any case
        "Vq8#nT2!htimS",  # last name reversed
        "J0hn-5m1th-Vq8#nT",  # l33t
        "Vq8#nT2!john.smith@example.com",  # the whole email
    ],
)
def test_password_built_from_personal_data_is_refused(policy: PasswordPolicy, password: str) -> None:
    assert policy.violations(password, user_inputs=JOHN) == [SIMILAR_TO_PERSONAL_DATA]
    assert policy.violations(password) == []


def test_similarity_handles_non_ascii_names(policy: PasswordPolicy) -> None:
    assert policy.violations("JÜRGEN-Vq8#nT2!", user_inputs=["Jürgen"]) == [SIMILAR_TO_PERSONAL_DATA]


def test_personal_data_shorter_than_three_characters_is_ignored(policy: PasswordPolicy) -> None:
    assert policy.violations("Vq8#nT2!Li-Al", user_inputs=["Li", "Al", "", "  "]) == []


def test_similarity_check_can_be_turned_off() -> None:
    policy = PasswordPolicy(check_similarity=False)
    assert policy.violations("johnsmith-Vq8#nT", user_inputs=JOHN) == []


# --- all together ---------------------------------------------------------------------------------


def test_all_violations_come_back_in_spryker_order() -> None:
    policy = PasswordPolicy(require_character_set=True)
    password = "johnaaaa1"
    found = policy.violations(password, user_inputs=JOHN)
    assert found == [TOO_SHORT, INVALID_CHARACTER_SET, REPEATED_CHARACTERS, COMMON_PASSWORD, SIMILAR_TO_PERSONAL_DATA]
    assert not any(password in violation.detail for violation in found)


@pytest.mark.parametrize(
    "password",
    ["İstanbul-İzmir-2024", "\ud800" * 12, "a\u0301" * 12, "\x00" * 12, "🔒🔑🗝️🔐🔓🔏-Vq8#nT2!", "İ" * 128],
)
def test_unusual_text_is_judged_without_raising(policy: PasswordPolicy, password: str) -> None:
    assert isinstance(policy.violations(password, user_inputs=["İzmir", "\ud800x"]), list)


def test_a_sequence_limit_of_one_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="MAX_REPEATED_CHARACTERS"):
        Settings(password_max_repeated_characters=1)


def test_policy_from_settings() -> None:
    settings = Settings(
        password_min_length=8,
        password_max_length=16,
        password_require_character_set=True,
        password_max_repeated_characters=2,
        password_deny_list=["Shop-Secret-1"],
        password_check_common=False,
        password_check_similarity=False,
    )
    policy = PasswordPolicy.from_settings(settings)
    assert policy.violations("Vq8#nT2!") == []
    assert policy.violations("Vq8#nT2") == [TOO_SHORT]
    assert policy.violations("Vq8#nT2!pLm4xQ7z9") == [TOO_LONG]
    assert policy.violations("vq8#nt2!") == [INVALID_CHARACTER_SET]
    assert policy.violations("Vq8#aa!x") == [REPEATED_CHARACTERS]
    assert policy.violations("shop-secret-1") == [INVALID_CHARACTER_SET, COMMON_PASSWORD]
    assert policy.violations("Dragon-1234!") == []  # common check off
    assert policy.violations("John-Vq8#nT2!", user_inputs=JOHN) == []  # similarity check off


def test_policy_from_default_settings_is_spryker_plus_checks() -> None:
    policy = PasswordPolicy.from_settings(Settings())
    assert policy.violations(STRONG_12[:11]) == [TOO_SHORT]
    assert policy.violations("password1234") == [COMMON_PASSWORD]
    assert policy.violations("johnsmith-Vq8#nT", user_inputs=JOHN) == [SIMILAR_TO_PERSONAL_DATA]


# --- hashing -------------------------------------------------------------------------------------


def test_hash_is_argon2id_with_the_given_parameters(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash(STRONG_12)
    assert password_hash.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in password_hash
    assert STRONG_12 not in password_hash
    assert hasher.hash(STRONG_12) != password_hash  # salted


def test_verify(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash(STRONG_12)
    assert hasher.verify(password_hash, STRONG_12) is True
    assert hasher.verify(password_hash, STRONG_12.lower()) is False
    assert hasher.verify(password_hash, "") is False


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$abc$def",
        "$argon2id$v=19$m=1024,t=1,p=1$ü$ü",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # a bcrypt hash (Spryker's)
    ],
)
def test_verify_of_garbage_hash_is_false(hasher: PasswordHasher, garbage: str) -> None:
    assert hasher.verify(garbage, STRONG_12) is False
    assert hasher.needs_rehash(garbage) is True


def test_password_with_lone_surrogate_hashes_and_verifies(hasher: PasswordHasher) -> None:
    # JSON can carry "\ud800"; it must not turn a login into a server error.
    password_hash = hasher.hash("\ud800" + STRONG_12)
    assert hasher.verify(password_hash, "\ud800" + STRONG_12) is True
    assert hasher.verify(password_hash, "\ud801" + STRONG_12) is False


@pytest.mark.parametrize(
    "parameters",
    [
        {"time_cost": 2, "memory_cost": 1024, "parallelism": 1},
        {"time_cost": 1, "memory_cost": 2048, "parallelism": 1},
        {"time_cost": 1, "memory_cost": 1024, "parallelism": 2},
    ],
)
def test_needs_rehash_when_parameters_change(hasher: PasswordHasher, parameters: dict[str, int]) -> None:
    password_hash = hasher.hash(STRONG_12)
    assert hasher.needs_rehash(password_hash) is False
    assert PasswordHasher(**parameters).needs_rehash(password_hash) is True
    # The old hash keeps working until the login that rehashes it.
    assert PasswordHasher(**parameters).verify(password_hash, STRONG_12) is True


def test_dummy_verify_is_always_false(hasher: PasswordHasher) -> None:
    assert hasher.dummy_verify(STRONG_12) is False
    assert hasher.dummy_verify(STRONG_12) is False
    assert hasher.dummy_verify("") is False


async def test_async_variants(hasher: PasswordHasher) -> None:
    password_hash = await hasher.hash_async(STRONG_12)
    assert password_hash.startswith("$argon2id$")
    assert await hasher.verify_async(password_hash, STRONG_12) is True
    assert await hasher.verify_async(password_hash, "wrong") is False
    assert await hasher.verify_async("garbage", STRONG_12) is False
    assert await hasher.dummy_verify_async(STRONG_12) is False


def test_hasher_from_settings() -> None:
    settings = Settings(argon2_time_cost=1, argon2_memory_cost=1024, argon2_parallelism=1)
    password_hash = PasswordHasher.from_settings(settings).hash(STRONG_12)
    assert "m=1024,t=1,p=1" in password_hash


def test_hasher_from_default_settings_uses_rfc_9106_low_memory_profile() -> None:
    hasher = PasswordHasher.from_settings(Settings())
    password_hash = hasher.hash(STRONG_12)
    assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert hasher.verify(password_hash, STRONG_12) is True
    fast_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(STRONG_12)
    assert hasher.needs_rehash(fast_hash) is True


# --- bcrypt hashes a shop's customer.csv brings ---------------------------------------------------------


@pytest.mark.parametrize("prefix", ["$2y$", "$2a$", "$2b$"])
def test_a_shops_bcrypt_hash_verifies_and_needs_a_rehash(hasher: PasswordHasher, prefix: str) -> None:
    made = bcrypt.hashpw(b"Shop-Pass 42!", bcrypt.gensalt(4)).decode()
    stored = prefix + made[4:]  # PHP's password_hash writes $2y$; the same hash under each name
    assert hasher.verify(stored, "Shop-Pass 42!")
    assert not hasher.verify(stored, "Shop-Pass 43!")
    assert hasher.needs_rehash(stored)
    assert not hasher.needs_rehash(hasher.hash("Shop-Pass 42!"))


def test_a_malformed_bcrypt_hash_is_a_mismatch_not_an_error(hasher: PasswordHasher) -> None:
    assert not hasher.verify("$2y$10$tooshort", "anything")
    assert not hasher.verify("$2y$10$" + "é" * 53, "anything")


def test_bcrypt_reads_72_bytes_as_php_does(hasher: PasswordHasher) -> None:
    long = "x" * 72
    stored = "$2y$" + bcrypt.hashpw(long.encode(), bcrypt.gensalt(4)).decode()[4:]
    assert hasher.verify(stored, long + "ignored by bcrypt")
