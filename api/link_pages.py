"""The HTML page an emailed link opens (a confirmation, an unlock, "this wasn't me"): one rule for all."""

from __future__ import annotations

from typing import Any

from fastapi.responses import HTMLResponse

from accounts.emails import EmailRenderer
from accounts.locales import locale_from_accept_language
from accounts.settings import Settings


def link_page(
    renderer: EmailRenderer,
    settings: Settings,
    page: str,
    locale: str | None,
    accept_language: str | None,
    context: dict[str, Any],
    *,
    invalid: bool,
) -> HTMLResponse:
    """`page` in the customer's language, else the browser's; 400 for a link that is no (longer) good.

    The token is in the page's URL (and its form): never cached. api/headers.py adds no-referrer and the
    other headers of every HTML page."""
    html = renderer.render_page(
        page, page_locale(settings, locale, accept_language), {"shop_name": settings.shop_name, **context}
    )
    return HTMLResponse(html, status_code=400 if invalid else 200, headers={"Cache-Control": "no-store"})


def page_locale(settings: Settings, locale: str | None, accept_language: str | None) -> str:
    """The language of a page a link opens: the customer's (the link names them), else the browser's."""
    return locale or locale_from_accept_language(accept_language, settings.locales, settings.default_locale)
