"""What bench/login.py's benches share: their customers, signing up and in over HTTP, the attack's
client addresses, the logs of a failed run, a row of the report.

bench/login.py (the sign-in bench), bench/login_processes.py (--processes) and bench/login_spray.py
(--spray) import it, and it imports none of them: no cycle, and bench/login.py run as a script is not
imported a second time under its own name. Not a script itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from processes import BenchFailure  # bench/processes.py, beside this one
from registration import (  # bench/registration.py, beside this one
    STEP_TIMEOUT,
    _expect,
    _token,
    bench_password,
    percentile,
)

from devstack.mailsink import MailSink, ReceivedEmail

IP_MAX_FAILURES = 1_000_000  # every request comes from the loopback interface: only the account bound may act
ATTACK_SIZE = 200
JSONAPI = "application/vnd.api+json"
SCRIPT = str(Path(__file__).with_name("login.py"))  # the command line, also of the attack and spray clients


@dataclass(frozen=True)
class Customer:
    email: str
    password: str


# --- HTTP -------------------------------------------------------------------------------------------


async def register(http: httpx.AsyncClient, sink: MailSink, email: str) -> Customer:
    """POST /customers, the link from the verification email, POST /customer-confirmation, the welcome email.

    bench/registration.py's `Registrations` does the same, but keeps the password it makes up to itself.
    """
    password = bench_password()
    response = await http.post(
        "/customers",
        json={
            "data": {
                "type": "customers",
                "attributes": {
                    "salutation": "Ms",
                    "gender": "Female",
                    "firstName": "Bench",
                    "lastName": "Signin",
                    "email": email,
                    "password": password,
                    "confirmPassword": password,
                    "acceptedTerms": True,
                },
            }
        },
    )
    _expect(response, 201, f"POST /customers for {email}")
    verification = await _mail(sink, email, lambda m: any("token=" in link for link in m.links))
    response = await http.post(
        "/customer-confirmation",
        json={"data": {"type": "customer-confirmation", "attributes": {"registrationKey": _token(verification)}}},
    )
    _expect(response, 204, f"POST /customer-confirmation for {email}")
    await _mail(sink, email, lambda m: "active" in m.subject.lower())  # welcome: "... your account is active"
    return Customer(email, password)


async def _mail(sink: MailSink, address: str, matches: Callable[[ReceivedEmail], bool]) -> ReceivedEmail:
    return await sink.wait_for(lambda m: address in (to.lower() for to in m.to) and matches(m), timeout=STEP_TIMEOUT)


async def sign_in(
    http: httpx.AsyncClient, email: str, password: str, device_token: str | None = None
) -> httpx.Response:
    headers = {**HEADERS, **({"X-Device-Token": device_token} if device_token else {})}
    return await http.post("/access-tokens", json=sign_in_document(email, password), headers=headers)


HEADERS = {"Content-Type": JSONAPI}


def sign_in_document(email: str, password: str) -> dict[str, Any]:
    return {"data": {"type": "access-tokens", "attributes": {"username": email, "password": password}}}


def attack_addresses(size: int) -> list[str]:
    """Loopback addresses other than 127.0.0.1: Linux answers on all of 127/8."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(size)]


@contextlib.contextmanager
def logs_on_failure(work: Path) -> Any:
    try:
        yield
    except BenchFailure as failure:
        tails = {name: (work / f"{name}.log").read_text(errors="replace")[-3000:] for name in ("api", "worker")}
        raise BenchFailure(f"{failure}\n" + "\n".join(f"--- {n}.log ---\n{t}" for n, t in tails.items())) from None


# --- output -----------------------------------------------------------------------------------------


def row(name: str, latencies: list[float], wall: float, per_second: float | None) -> str:
    rate = f"{per_second:>9.1f}" if per_second is not None else f"{'':>9}"
    return (
        f"{name:<28}{len(latencies):>6}{wall:>9.2f}{rate}"
        f"{percentile(latencies, 0.5) * 1000:>9.0f}{percentile(latencies, 0.99) * 1000:>9.0f}"
    )
