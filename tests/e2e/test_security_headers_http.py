"""Security headers over HTTP for every route the app has: each HTML answer carries the CSP (no framing), nosniff
and no-referrer; each token answer `Cache-Control: no-store`. The routes are read from the app itself, so a new
HTML page or token route is checked without a line here."""

from __future__ import annotations

import re
from typing import Any

import httpx
from conftest import Database, StackFactory
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from test_backoffice_web import staff_with_password, web_sign_in
from test_login_http import PASSWORD, registered, sign_in

from api.headers import is_token_path
from api.web.ui import WebRoute

PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def assert_page_headers(answer: httpx.Response, *, api_docs: bool = False) -> None:
    what = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    policy = answer.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, what
    assert ("script-src" in policy) is api_docs, what  # no page runs scripts, only FastAPI's API documentation
    assert answer.headers.get("x-content-type-options") == "nosniff", what
    assert answer.headers.get("referrer-policy") == "no-referrer", what


def html(answer: httpx.Response) -> bool:
    return answer.headers.get("content-type", "").startswith("text/html")


async def test_every_html_answer_and_every_token_answer_carries_its_headers(
    stack: StackFactory, dev_server: Any, sqlite_database: Database
) -> None:
    async with stack(dev_server, sqlite_database, api=True) as e2e, e2e.http() as http:
        assert e2e.server is not None
        app = e2e.server.config.app
        assert isinstance(app, FastAPI)
        contexts = iter_route_contexts(app.routes)
        routes = [(r.path, r.methods, r.original_route) for r in contexts if r.path and r.methods]
        api_docs = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
        email, reference = await registered(e2e, http)
        name, password = await staff_with_password(e2e, role="admin")
        assert (await web_sign_in(http, name, password)).status_code == 303
        values = {"customer_reference": reference}

        answered_html: set[tuple[str, str]] = set()
        for template, methods, _ in routes:
            path = PARAMETER.sub(lambda m: values.get(m[1], "unknown"), template)
            for method in sorted(methods - {"HEAD"}):
                answer = await http.request(method, path)
                assert answer.headers.get("x-content-type-options") == "nosniff", (method, path)
                if html(answer):
                    assert_page_headers(answer, api_docs=template in api_docs)
                    answered_html.add((method, template))
                if is_token_path(path):
                    assert answer.headers.get("cache-control") == "no-store", (method, path, answer.status_code)
        pages = {
            ("GET", template)
            for template, methods, route in routes
            if "GET" in methods
            and isinstance(route, APIRoute)
            and (route.response_class is HTMLResponse or isinstance(route, WebRoute))
            and not template.endswith(".csv")
        }
        # the loop did reach every page
        assert len(pages) >= 6 and pages <= answered_html, pages - answered_html
        assert api_docs <= {p for _, p in answered_html}
        assert {("GET", "/register/confirm"), ("GET", "/backoffice"), ("POST", "/backoffice/sign-in")} <= answered_html

        # the answers that do carry tokens
        signed_in = await sign_in(http, email)
        assert (signed_in.status_code, signed_in.headers.get("cache-control")) == (201, "no-store")
        refresh_token = signed_in.json()["data"]["attributes"]["refreshToken"]
        body = {"data": {"type": "refresh-tokens", "attributes": {"refreshToken": refresh_token}}}
        refreshed = await http.post("/refresh-tokens", json=body)
        assert (refreshed.status_code, refreshed.headers.get("cache-control")) == (201, "no-store")
        oauth = await http.post("/token", data={"grant_type": "password", "username": email, "password": PASSWORD})
        assert (oauth.status_code, oauth.headers.get("cache-control")) == (200, "no-store")
        assert is_token_path("/agent-access-tokens") and not is_token_path("/customers")
