"""The one rule by which two email addresses are the same account: `email_key(address)`.

`anna@bücher.de`, `Anna@BÜCHER.de` and `anna@xn--bcher-kva.de` are one mailbox, so they are one key:
Unicode NFC (a composed `ü` and `u` + combining diaeresis are one character), the local part lower-cased
(as the key always was: RFC 5321 lets a server tell cases apart, no real one does), and the domain in its
IDNA A-label form (UTS 46 mapping, so it is lower-cased too). The key is what the unique index on
`customers.email_key` holds and every lookup compares: registration, sign-in, forgotten password, email
change, the back-office search and the CSV import. The address as typed stays in `customers.email`.
"""

from __future__ import annotations

import functools
import unicodedata

import idna
from email_validator import EmailNotValidError, validate_email

MAX_LENGTH = 255  # customers.email, staff.email


def email_key(address: str) -> str:
    text = unicodedata.normalize("NFC", address.strip())
    local, at, domain = text.rpartition("@")
    if not at:  # no address at all (a search term, junk): still one form for one text
        return text.lower()
    return f"{local.lower()}@{ascii_domain(domain)}"


def valid_address(address: str) -> str | None:
    """The address as typed (trimmed) when it is one, as the sign-up checks it (email_validator, no DNS);
    else None. What staff addresses are checked with (`accounts staff create --email`, `set-email`)."""
    text = address.strip()
    if not text or len(text) > MAX_LENGTH:
        return None
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return text


@functools.lru_cache(maxsize=4096)  # a few domains hold most addresses; IDNA costs ~20 µs a call
def ascii_domain(domain: str) -> str:
    """The domain's A-label form; one that IDNA refuses (an address literal, junk) lower-cased as it is."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()
