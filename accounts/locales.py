"""Which of the shop's supported locales (``en_US``, ``de_DE``) a customer, a form field or a browser means."""

from __future__ import annotations

from collections.abc import Sequence


def normalize_locale(value: str | None, supported: Sequence[str], default: str) -> str:
    """The supported locale that ``value`` names, e.g. ``"de"``, ``"de-DE"`` or ``"DE_de"`` -> ``"de_DE"``.

    An exact language-and-region match wins; otherwise the first supported locale with the same
    language (``"de-AT"`` -> ``"de_DE"``); otherwise ``default``.
    """
    return _match(value, supported) or default


def locale_from_accept_language(header: str | None, supported: Sequence[str], default: str) -> str:
    """The supported locale a browser prefers most, from an HTTP ``Accept-Language`` header.

    Ranges are tried by descending q-value, ties in header order; ``q=0`` ranges are never chosen,
    and ``*`` accepts the default.
    """
    for language_range in _ranges_by_preference(header or ""):
        if language_range == "*":
            return default
        match = _match(language_range, supported)
        if match is not None:
            return match
    return default


def _key(value: str) -> tuple[str, str]:
    # POSIX names carry an encoding and a modifier ("de_DE.UTF-8@euro") that say nothing about language.
    tag = value.strip().split(".", 1)[0].split("@", 1)[0].replace("-", "_")
    language, _, region = tag.partition("_")
    return language.lower(), region.lower()


def _match(value: str | None, supported: Sequence[str]) -> str | None:
    if not value or not value.strip():
        return None
    language, region = _key(value)
    if not language:
        return None
    if region:
        for candidate in supported:
            if _key(candidate) == (language, region):
                return candidate
    for candidate in supported:
        if _key(candidate)[0] == language:
            return candidate
    return None


def _ranges_by_preference(header: str) -> list[str]:
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        language_range, *params = (part.strip() for part in item.split(";"))
        if not language_range:
            continue
        quality = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(raw.strip())
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, position, language_range))
    return [language_range for _, _, language_range in sorted(weighted)]
