"""Secrets out of text: the one function every repr, error and log line shows a URL through.

A connection URL can carry a password in two places: the userinfo
(``redis://user:secret@host``) and the query (``?password=secret``, ``&token=...``).
:func:`redact_url` replaces both with ``***`` and keeps everything else, so a message
still says which server and database it is about.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["redact_text", "redact_url"]

#: Query parameters whose values are secrets: any name containing one of these words.
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "auth", "key", "credential")
_MASK = "***"


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` with its password, username's secret and secret query values as ``***``.

    A user name alone (``redis://alice@host``) is kept: it names, it does not open. A
    URL that cannot be parsed is replaced whole (it might hold anything).
    """
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed netloc
    except ValueError:
        return "<a URL that cannot be parsed>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _password = userinfo.partition(":")
        if has_password:
            userinfo = f"{user}:{_MASK}" if user else f":{_MASK}"
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_secret_name(name) for name, _ in pairs):
            query = "&".join(
                f"{urllib.parse.quote(name, safe='')}="
                f"{_MASK if _secret_name(name) else urllib.parse.quote(value, safe='')}"
                for name, value in pairs
            )
    # Replaced in place rather than through urlunsplit, which drops the empty netloc of
    # ``unix:///path`` and would change the URL beyond its secrets.
    shown = url
    if netloc != parts.netloc:
        shown = shown.replace(parts.netloc, netloc, 1)
    if query != parts.query:
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def _secrets(url: str) -> list[str]:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    found = []
    if parts.password:
        found.append(parts.password)
        found.append(urllib.parse.unquote(parts.password))
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if value and _secret_name(name):
            found.extend((value, urllib.parse.quote(value, safe="")))
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact_text(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` in it replaced by ``***``.

    For messages made by other code (a client library's exception) that may repeat the
    URL or its password: the URL itself is redacted with :func:`redact_url` first.
    """
    if url in text:
        text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        text = re.sub(re.escape(secret), _MASK, text)
    return text
