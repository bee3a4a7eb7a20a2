"""URLs as the harness shows and stores them: without a password.

A user's URLs (``--url``, ``--database-url``) may hold one, in the user part or in a
``password`` parameter; the run uses the URL as given, and every message, progress line,
results file and report shows :func:`display_url` instead. Standard library only: the
CLI's light paths (``harness config``) import it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

_SQLITE = "sqlite:///"  # then the file's absolute path, as the launcher writes it
_POSTGRES_PORT = 5432  # libpq's, for a URL that names none


def display_url(url: str) -> str:
    """``url`` without its password (in the user part or a ``password`` parameter), for messages and results."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an invalid IPv6 host, say
        return hide_secrets(url, url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}{at}{hostport}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = parts.query  # as written, unless a password in it must go
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(key, value) for key, value in pairs if key != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def database_parts(url: str) -> dict[str, str]:
    """The parts of a database's URL, for an app that takes them apart: ``database_host``, ``_port``, ``_name``,
    ``_user`` and ``_password``, percent-decoded.

    A ``sqlite:///PATH`` is a file and nothing else: its name is the path, the other parts are
    empty. A PostgreSQL URL without a port has libpq's, 5432; a password may also be its
    ``password`` parameter.
    """
    if url.startswith(_SQLITE):
        host = port = user = password = ""
        name = url.removeprefix(_SQLITE)
    else:
        parts = urlsplit(url)
        host, port = parts.hostname or "", str(parts.port or _POSTGRES_PORT)
        name, user = unquote(parts.path.removeprefix("/")), unquote(parts.username or "")
        in_query = next((value for key, value in parse_qsl(parts.query) if key == "password"), "")  # decoded already
        password = in_query if parts.password is None else unquote(parts.password)
    return {
        "database_host": host,
        "database_port": port,
        "database_name": name,
        "database_user": user,
        "database_password": password,
    }


def hide_secrets(text: str, url: str) -> str:
    """``text`` (a library's message about ``url``, say) with the password of ``url`` in it replaced by ``***``."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def _secrets(url: str) -> list[str]:
    """The password of ``url`` as written and as meant (percent-decoded), longest first, if it has one.

    Found by splitting the text, not by urlsplit, which refuses some URLs (an invalid IPv6 host).
    """
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0].partition("#")[0]
    written = [netloc.rpartition("@")[0].partition(":")[2]]
    written += [value for key, value in parse_qsl(url.partition("?")[2].partition("#")[0]) if key == "password"]
    return sorted({form for secret in written if secret for form in (secret, unquote(secret))}, key=len, reverse=True)
