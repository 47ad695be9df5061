"""Secrets out of text: URLs shown with their passwords and tokens as ``***``."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from toolvisor._redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://alice:hunter2@localhost/0", "redis://alice:***@localhost/0"),
        ("redis://alice@localhost/0", "redis://alice@localhost/0"),
        ("rediss://h:6380/0?password=hunter2", "rediss://h:6380/0?password=***"),
        (
            "redis://h/0?ssl_cert_reqs=none&Password=hunter2&db=3",
            "redis://h/0?ssl_cert_reqs=none&Password=***&db=3",
        ),
        (
            "https://api.example/v1?access_token=abc&x=1",
            "https://api.example/v1?access_token=***&x=1",
        ),
        ("redis://h/0?api_key=abc&authToken=def", "redis://h/0?api_key=***&authToken=***"),
        (
            "unix:///run/redis.sock?password=hunter2&db=0",
            "unix:///run/redis.sock?password=***&db=0",
        ),
        ("redis://:p%40ss@h/0", "redis://:***@h/0"),
        ("redis://h:notaport/0", "<a URL that cannot be parsed>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_removes_the_url_and_its_secrets_wherever_they_appear() -> None:
    url = "redis://:hunter2@db.internal:6379/0?token=t0k3n"
    text = f"connect to {url} failed: AUTH hunter2 refused (token t0k3n; p=hunter2)"
    out = redact_text(text, url)
    assert "hunter2" not in out
    assert "t0k3n" not in out
    assert "redis://:***@db.internal:6379/0?token=***" in out


secret = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=20
)


@given(password=secret, token=secret, host=st.sampled_from(["h", "10.0.0.1", "db.internal"]))
def test_no_secret_survives_redaction(password: str, token: str, host: str) -> None:
    fixed = f"redis://user:@{host}:6379/2?password=&db=2"  # the URL's text around them
    assume(password not in fixed and token not in fixed)  # else "found" proves nothing
    quoted = urllib.parse.quote(password, safe="")
    url = f"redis://user:{quoted}@{host}:6379/2?password={token}&db=2"
    shown = redact_url(url)
    assert password not in shown.replace("user", "").replace(host, "")
    assert token not in shown.replace("user", "").replace(host, "").replace("password", "")
    assert shown.startswith(f"redis://user:***@{host}:6379/2?")
    assert redact_text(f"x {password} y {token} z", url).count("***") == 2
