"""The password rules and the password hashing, in one place for every entry point.

The REST API, the back office, the CLI and the activities all ask `PasswordPolicy.violations` whether
a new password is acceptable and use `PasswordHasher` to store and check it, so a rule changes here
and nowhere else.

The rules are Spryker's (error codes 418-422 of the Glue API: length, character set, repeated
characters, deny list), plus an offline check against common and breached passwords and a check
against the customer's own data. HTTP statuses are the API layer's business.

Nothing here logs a password or puts one into an exception or a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, Final, TypeVar

import bcrypt
from argon2 import PasswordHasher as _Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import matching, scoring

if TYPE_CHECKING:
    from accounts.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class PolicyViolation:
    code: str  # Spryker Glue error code
    detail: str  # English text; Spryker's exact text where it has one


TOO_SHORT: Final = PolicyViolation("418", "The password is too short.")
TOO_LONG: Final = PolicyViolation("419", "The password is too long.")
INVALID_CHARACTER_SET: Final = PolicyViolation("420", "The password character set is invalid.")
REPEATED_CHARACTERS: Final = PolicyViolation("421", "The password contains sequence of the same character.")
COMMON_PASSWORD: Final = PolicyViolation("422", "The password is listed as common.")
SIMILAR_TO_PERSONAL_DATA: Final = PolicyViolation("422", "The password is too similar to your personal data.")

# zxcvbn's score 3 starts at 10^8 guesses ("safely unguessable: moderate protection from offline
# slow-hash scenario"); below it zxcvbn promises protection from online guessing only, and a leaked
# argon2 table is exactly the offline slow-hash case. So "common" means score 0-2: see `_is_guessable`.
COMMON_GUESSES_THRESHOLD: Final = 10**8

# Personal data shorter than this ("Li", "Ng") would match far too many passwords.
MIN_PERSONAL_DATA_LENGTH: Final = 3
# Parts split off a name or an email address ("von", "der", "doe") need one more character to count.
MIN_PERSONAL_DATA_PART_LENGTH: Final = 4
# Django's UserAttributeSimilarityValidator default: a password this alike to a piece of personal
# data is a typo of it ("jonhsmith" for "john.smith").
MAX_SIMILARITY_RATIO: Final = 0.7


def user_inputs(email: str, first_name: str | None, last_name: str | None) -> list[str]:
    """The customer's own data a password must not resemble: the address, its local part, the names."""
    return [value for value in (email, email.split("@", 1)[0], first_name, last_name) if value]


class PasswordPolicy:
    """Which passwords a customer may choose; `violations` lists what is wrong with one."""

    def __init__(
        self,
        *,
        min_length: int = 12,
        max_length: int = 128,
        require_character_set: bool = False,
        max_repeated_characters: int = 3,
        deny_list: Iterable[str] = (),
        check_common: bool = True,
        check_similarity: bool = True,
    ) -> None:
        if not 1 <= min_length <= max_length:
            raise ValueError("password lengths must satisfy 1 <= min_length <= max_length")
        if max_repeated_characters < 0 or max_repeated_characters == 1:
            raise ValueError("max_repeated_characters must be 0 (off) or at least 2")
        self.min_length = min_length
        self.max_length = max_length
        self.require_character_set = require_character_set
        self.max_repeated_characters = max_repeated_characters
        self.deny_list = frozenset(word.casefold() for word in deny_list)
        self.check_common = check_common
        self.check_similarity = check_similarity

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordPolicy:
        return cls(
            min_length=settings.password_min_length,
            max_length=settings.password_max_length,
            require_character_set=settings.password_require_character_set,
            max_repeated_characters=settings.password_max_repeated_characters,
            deny_list=settings.password_deny_list,
            check_common=settings.password_check_common,
            check_similarity=settings.password_check_similarity,
        )

    def violations(self, password: str, *, user_inputs: Sequence[str] = ()) -> list[PolicyViolation]:
        """Everything wrong with `password`, in Spryker's order; empty when it is acceptable.

        `user_inputs` is the customer's own data: email, email local part, first name, last name.
        """
        # Checked first and alone: nothing below may spend time on a megabyte of "password".
        if len(password) > self.max_length:
            return [TOO_LONG]
        found: list[PolicyViolation] = []
        if len(password) < self.min_length:
            found.append(TOO_SHORT)
        if self.require_character_set and not _has_every_character_class(password):
            found.append(INVALID_CHARACTER_SET)
        # Spryker's meaning of the number: N refuses N identical characters in a row (3 refuses "eee")
        if self.max_repeated_characters and _longest_run(password) >= self.max_repeated_characters:
            found.append(REPEATED_CHARACTERS)
        if password.casefold() in self.deny_list or (self.check_common and _is_common(password)):
            found.append(COMMON_PASSWORD)
        if self.check_similarity and _is_similar(password, _personal_data(user_inputs)):
            found.append(SIMILAR_TO_PERSONAL_DATA)
        return found


def _has_every_character_class(password: str) -> bool:
    # Spryker's composition rule; any non-alphanumeric character (a space too) counts as special.
    return (
        any(char.islower() for char in password)
        and any(char.isupper() for char in password)
        and any(char.isdigit() for char in password)
        and any(not char.isalnum() for char in password)
    )


def _longest_run(password: str) -> int:
    return max((len(list(run)) for _, run in itertools.groupby(password)), default=0)


# --- common and breached passwords ---------------------------------------------------------------
#
# zxcvbn's own entry point is not used on purpose. Its l33t matcher tries up to 736 substitution
# tables, each against every substring of the password: a 128-character password-manager password
# takes up to 10 s of CPU, and a 20-character one made of l33t symbols 0.2 s, which would turn
# registration into a denial-of-service lever. `zxcvbn()` also writes the customer's data into a
# module-level dictionary shared by all threads. So the code below reuses zxcvbn's dictionaries,
# its cheap matchers (keyboard walks, sequences, years, dates) and its guess scoring, and brings its
# own bounded dictionary, l33t and repeat matchers (repeat because zxcvbn's recurses into the slow
# ones): a dictionary lookup only tries substrings as long as the dictionary's longest word, and
# l33t applies every substitution at once, trying both readings of the ambiguous symbols ("1" is i
# or l, "7" is l or t): at most 8 passes. A 128-character password takes under 15 ms.

Match = dict[str, Any]

# `zxcvbn()` adds a "user_inputs" dictionary to this module-level mapping; it is not ours to use.
_DICTIONARIES: Final = {name: ranked for name, ranked in matching.RANKED_DICTIONARIES.items() if name != "user_inputs"}
_LONGEST_WORD: Final = {name: max(map(len, ranked)) for name, ranked in _DICTIONARIES.items()}
# 30,000 passwords from breach corpora, most frequent first.
_BREACHED_PASSWORDS: Final[dict[str, int]] = _DICTIONARIES["passwords"]


def _l33t_readings() -> dict[str, tuple[str, ...]]:
    readings: dict[str, list[str]] = {}
    for letter, symbols in matching.L33T_TABLE.items():
        for symbol in symbols:
            readings.setdefault(symbol, []).append(letter)
    return {symbol: tuple(letters) for symbol, letters in readings.items()}


_L33T_READINGS: Final = _l33t_readings()
_GREEDY_REPEAT: Final = re.compile(r"(.+)\1+", re.DOTALL)
_LAZY_REPEAT: Final = re.compile(r"(.+?)\1+", re.DOTALL)
# zxcvbn's scoring is cubic in the length at worst ("i" * 64 takes 0.1 s, "isi" * 43 0.5 s), so a
# password longer than 32 characters (15 ms at worst) is estimated in parts whose guesses multiply:
# its repeats ("password" * 16) whole, since cutting them would hide them, and the rest in even
# pieces of at most 32 characters. Passwords that long are only guessable when made of repeats and
# runs, and on generated ones the parts agree with whole-password zxcvbn (or are a little stricter,
# as each part pays zxcvbn's penalty for many-part sequences on its own).
_PIECE_LENGTH: Final = 32
# A policy configured with a huge max_length still gets a bounded check: only the first 256
# characters are looked at (a password whose first 256 characters are guessable is not a good one).
_ANALYSED_LENGTH: Final = 256


def _is_common(password: str) -> bool:
    return _lower(password) in _BREACHED_PASSWORDS or _is_guessable(password[:_ANALYSED_LENGTH])


def _is_guessable(password: str) -> bool:
    """A breached or dictionary password with trivial decoration ("password12345!", "P@ssw0rd1234").

    Guessable means: zxcvbn estimates fewer than COMMON_GUESSES_THRESHOLD guesses, and at least half
    of the password is made of patterns zxcvbn knows (dictionary words and breached passwords, also
    reversed or l33t; keyboard walks; repeats; sequences; years and dates). The second half of the
    rule keeps a short random password (min_length 8) from counting as "common": its weakness is
    its length alone, which is the length rule's business.
    """
    if not password:
        return False
    guesses, patterned = _estimate(password)
    return guesses < COMMON_GUESSES_THRESHOLD and 2 * patterned >= len(password)


def _estimate(password: str) -> tuple[Decimal, int]:
    """zxcvbn's guesses for a non-empty `password`, and how many of its characters follow a pattern."""
    if len(password) <= _PIECE_LENGTH:
        result = scoring.most_guessable_match_sequence(password, _omnimatch(password))
        patterned = sum(m["j"] - m["i"] + 1 for m in result["sequence"] if m["pattern"] != "bruteforce")
        return Decimal(result["guesses"]), patterned
    guesses, patterned, position = Decimal(1), 0, 0
    for repeat in [*_repeat_matches(password), None]:
        gap = password[position : len(password) if repeat is None else repeat["i"]]
        for piece in _even_pieces(gap):
            piece_guesses, piece_patterned = _estimate(piece)
            guesses *= piece_guesses
            patterned += piece_patterned
        if repeat is not None:
            guesses *= scoring.estimate_guesses(repeat, password)
            patterned += len(repeat["token"])
            position = repeat["j"] + 1
    return guesses, patterned


def _even_pieces(text: str) -> Iterator[str]:
    """`text` in pieces of at most _PIECE_LENGTH characters, all about as long (33 is 17 + 16)."""
    if not text:
        return
    count = -(-len(text) // _PIECE_LENGTH)
    size = -(-len(text) // count)
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _omnimatch(password: str) -> list[Match]:
    lowered = _lower(password)
    return [
        *_dictionary_matches(password, lowered),
        *_reversed_dictionary_matches(password, lowered),
        *_l33t_matches(password, lowered),
        *matching.spatial_match(password),
        *_repeat_matches(password),
        *matching.sequence_match(password),
        *matching.regex_match(password),
        *matching.date_match(password),
    ]


def _lower(text: str) -> str:
    # Character by character, keeping the length ("İ".lower() is two characters), so that positions
    # in the lowered text are positions in the password.
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _dictionary_matches(password: str, lowered: str) -> Iterator[Match]:
    length = len(lowered)
    for name, ranked in _DICTIONARIES.items():
        for i in range(length):
            for j in range(i, min(length, i + _LONGEST_WORD[name])):
                word = lowered[i : j + 1]
                rank = ranked.get(word)
                if rank is not None:
                    yield {
                        "pattern": "dictionary",
                        "i": i,
                        "j": j,
                        "token": password[i : j + 1],
                        "matched_word": word,
                        "rank": rank,
                        "dictionary_name": name,
                        "reversed": False,
                        "l33t": False,
                    }


def _reversed_dictionary_matches(password: str, lowered: str) -> Iterator[Match]:
    last = len(password) - 1
    for match in _dictionary_matches(password[::-1], lowered[::-1]):
        i, j = match["i"], match["j"]
        match.update(i=last - j, j=last - i, token=match["token"][::-1], reversed=True)
        yield match


def _l33t_matches(password: str, lowered: str) -> Iterator[Match]:
    symbols = [symbol for symbol in _L33T_READINGS if symbol in lowered]
    seen: set[tuple[int, int, str, str]] = set()
    for letters in itertools.product(*(_L33T_READINGS[symbol] for symbol in symbols)):
        substitution = dict(zip(symbols, letters, strict=True))
        translated = "".join(substitution.get(char, char) for char in lowered)
        for match in _dictionary_matches(password, translated):
            i, j, word = match["i"], match["j"], match["matched_word"]
            key = (i, j, match["dictionary_name"], word)
            # Matches without an actual substitution are the plain dictionary matcher's.
            if j == i or lowered[i : j + 1] == word or key in seen:
                continue
            seen.add(key)
            used = {symbol: substitution[symbol] for symbol in substitution if symbol in match["token"]}
            match.update(l33t=True, sub=used)
            yield match


def _repeat_matches(password: str) -> Iterator[Match]:
    # zxcvbn's repeat matcher ("abcabcabc" is "abc" three times), recursing into the bounded matchers.
    position = 0
    while position < len(password):
        greedy = _GREEDY_REPEAT.search(password, position)
        lazy = _LAZY_REPEAT.search(password, position)
        if greedy is None or lazy is None:
            return
        if len(greedy[0]) > len(lazy[0]):
            # "aabaab" is "aab" twice, and greedy's repeated unit may itself repeat ("aabaabaabaab").
            found = greedy
            shortest = _LAZY_REPEAT.fullmatch(greedy[0])
            base = shortest[1] if shortest is not None else greedy[1]
        else:
            found, base = lazy, lazy[1]
        base_guesses, _ = _estimate(base)
        yield {
            "pattern": "repeat",
            "i": found.start(),
            "j": found.end() - 1,
            "token": found[0],
            "base_token": base,
            "base_guesses": base_guesses,
            "base_matches": [],  # only zxcvbn's feedback texts read them
            "repeat_count": len(found[0]) / len(base),
        }
        position = found.end()


# --- the customer's own data ---------------------------------------------------------------------


def _personal_data(user_inputs: Sequence[str]) -> set[str]:
    """The pieces of the customer's data a password must not contain, case-folded."""
    pieces: set[str] = set()
    for value in user_inputs:
        whole = value.strip().casefold()
        local_part = whole.partition("@")[0]
        pieces.update(piece for piece in (whole, local_part) if len(piece) >= MIN_PERSONAL_DATA_LENGTH)
        # "john.smith" and "Anne-Marie" yield "john", "smith", "anne", "marie".
        pieces.update(part for part in re.split(r"[\W_]+", local_part) if len(part) >= MIN_PERSONAL_DATA_PART_LENGTH)
    return pieces


def _is_similar(password: str, personal_data: set[str]) -> bool:
    if not personal_data:
        return False
    folded = password.casefold()
    readings = [folded, *_l33t_translations(folded)]
    readings += [reading[::-1] for reading in readings]
    for piece in personal_data:
        if any(piece in reading for reading in readings):
            return True
        matcher = SequenceMatcher(a=folded, b=piece, autojunk=False)
        if matcher.quick_ratio() >= MAX_SIMILARITY_RATIO and matcher.ratio() >= MAX_SIMILARITY_RATIO:
            return True
    return False


def _l33t_translations(text: str) -> Iterator[str]:
    symbols = [symbol for symbol in _L33T_READINGS if symbol in text]
    if not symbols:
        return
    for letters in itertools.product(*(_L33T_READINGS[symbol] for symbol in symbols)):
        substitution = dict(zip(symbols, letters, strict=True))
        yield "".join(substitution.get(char, char) for char in text)


# --- hashing -------------------------------------------------------------------------------------


BCRYPT_PREFIXES: Final = ("$2y$", "$2a$", "$2b$")  # PHP's password_hash (Spryker) writes $2y$
ARGON2_PREFIX: Final = "$argon2"
BCRYPT_MAX_BYTES: Final = 72  # bcrypt reads no further (PHP truncates there, the library refuses more)


def is_bcrypt_hash(value: str) -> bool:
    return value.startswith(BCRYPT_PREFIXES)


def is_stored_hash(value: str) -> bool:
    """A hash imported as is (a shop's bcrypt, or argon2): anything else in a password column is plaintext."""
    return is_bcrypt_hash(value) or value.startswith(ARGON2_PREFIX)


class PasswordHasher:
    """argon2id hashes: hash a new password, verify a login, tell when a stored hash is outdated.

    bcrypt hashes (imported from a shop system, customer.csv) verify too, and always need a rehash:
    the first successful sign-in replaces them with argon2id (the rehash lifecycle).

    The async variants run argon2 in threads of their own: it takes hundreds of milliseconds of CPU
    by design, and the event loop must keep serving other requests meanwhile. Their own pool (one
    thread per core unless ACCOUNTS_ARGON2_THREADS says otherwise), not the loop's default executor,
    so nothing else sent to threads (a DNS lookup for a new database connection, a password-policy
    check) queues behind waiting verifications; and at the lowest CPU priority (nice 19, Linux), so a
    refused sign-in, which is a few milliseconds of work on the loop, is not slowed by them either.
    """

    def __init__(
        self, *, time_cost: int, memory_cost: int, parallelism: int, threads: int = 0, niceness: int = 19
    ) -> None:
        self._argon2 = _Argon2Hasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        self._dummy_hash: str | None = None
        self._threads = threads or os.cpu_count() or 1
        self._niceness = niceness
        self._pool: ThreadPoolExecutor | None = None  # made on first use: a hasher may never hash async
        self._known_devices_pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
            threads=settings.argon2_threads,
            niceness=settings.argon2_niceness,
        )

    def hash(self, password: str) -> str:
        return self._argon2.hash(_secret(password))

    def _new_pool(self, name: str) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(
            self._threads, thread_name_prefix=name, initializer=_yield_cpu, initargs=(self._niceness,)
        )

    async def _in_pool(self, work: Callable[..., T], *args: str) -> T:
        if self._pool is None:
            self._pool = self._new_pool("argon2")
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    async def hash_async(self, password: str) -> str:
        return await self._in_pool(self.hash, password)

    def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; False on a mismatch or a hash that is not an argon2 hash."""
        if not password_hash.isascii():
            return False
        if is_bcrypt_hash(password_hash):
            return _bcrypt_verify(password_hash, password)
        try:
            return self._argon2.verify(password_hash, _secret(password))
        except (VerificationError, InvalidHashError):
            return False

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await self._in_pool(self.verify, password_hash, password)

    async def verify_known_device_async(self, password_hash: str, password: str) -> bool:
        """verify_async for a sign-in from a known device (accounts/device_tokens.py): in a pool of its own,
        so the owner's sign-in does not queue behind the verifications of an attack on their account
        (those are bounded per account; these per device token)."""
        if self._known_devices_pool is None:
            self._known_devices_pool = self._new_pool("argon2-known")
        return await asyncio.get_running_loop().run_in_executor(
            self._known_devices_pool, self.verify, password_hash, password
        )

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters (or is no argon2 hash at all: bcrypt)."""
        try:
            return self._argon2.check_needs_rehash(password_hash)
        except ValueError:  # InvalidHashError: not an argon2 hash
            return True

    def dummy_verify(self, password: str) -> bool:
        """Spend what a real check costs, for a login to an account that does not exist.

        Without it, "unknown email" answers faster than "wrong password" and gives the list of
        customers away. Always False: the dummy hash is of a random secret nobody knows.
        """
        if self._dummy_hash is None:
            # Two threads racing here both compute a valid dummy hash; either one may be kept.
            self._dummy_hash = self.hash(secrets.token_urlsafe(32))
        self.verify(self._dummy_hash, password)
        return False

    async def dummy_verify_async(self, password: str) -> bool:
        return await self._in_pool(self.dummy_verify, password)


# Why the lowest priority by default (ACCOUNTS_ARGON2_NICENESS): each verification runs in its pool thread
# plus argon2's lane threads (4 by default), all CPU-bound; at nice 19 (CFS weight 15 each against the loop's
# 1024) the loop still wins its core. At nice 10 (weight 110) eight of them took half the core from the loop,
# and refusals slowed fivefold. The cost: on a host shared with other busy processes, verifications yield
# to those too.


def _yield_cpu(niceness: int) -> None:
    """Run this argon2 thread at a lower priority than the event loop (Linux keeps a nice value per thread)."""
    if niceness and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def _bcrypt_verify(password_hash: str, password: str) -> bool:
    try:
        return bcrypt.checkpw(_secret(password)[:BCRYPT_MAX_BYTES], password_hash.encode("ascii"))
    except ValueError:  # a malformed hash
        return False


def _secret(password: str) -> bytes:
    # "surrogatepass": JSON may carry a lone surrogate ("\ud800"), which strict UTF-8 refuses to
    # encode; such a password must hash and verify like any other instead of raising. Valid text
    # encodes exactly as with strict UTF-8, so the hashes are the usual ones.
    return password.encode("utf-8", "surrogatepass")
