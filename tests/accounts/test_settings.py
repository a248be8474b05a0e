"""A refused setting stops the service with one line naming it (docs/configuration.md)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from accounts.settings import Settings

REFUSED = [
    ("ACCOUNTS_LOCKOUT_MAX_FAILURES", {"lockout_max_failures": 0}),
    ("ACCOUNTS_LOCKOUT_IP_MAX_FAILURES", {"lockout_ip_max_failures": 0}),
    ("ACCOUNTS_LOCKOUT_DEVICE_MAX_FAILURES", {"lockout_device_max_failures": 0}),
    ("ACCOUNTS_RATE_LIMIT_PER_IP", {"rate_limit_per_ip": -1}),
    ("ACCOUNTS_RATE_LIMIT_GLOBAL", {"rate_limit_global": -1}),
    ("ACCOUNTS_ADDRESS_REQUESTS_PER_HOUR", {"address_requests_per_hour": -1}),
    ("ACCOUNTS_CLIENT_IPV6_PREFIX", {"client_ipv6_prefix": 129}),
]


@pytest.mark.parametrize(("name", "values"), REFUSED, ids=[name for name, _ in REFUSED])
def test_a_refused_value_names_its_setting(name: str, values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **values)  # type: ignore[call-arg]
    messages = [error["msg"] for error in refused.value.errors()]
    assert len(messages) == 1 and name in messages[0], messages
    assert all(other not in messages[0] for other, _ in REFUSED if other != name)


def test_the_defaults_are_accepted() -> None:
    Settings(_env_file=None)  # type: ignore[call-arg]
