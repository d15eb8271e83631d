"""Which caller-supplied URLs the gateway may call: the parsed, exact-match allowlist behind `allowed_base_urls`.

A credential's ``base_url`` makes the gateway connect to a host of the caller's choosing and send it the caller's
vendor key, so it is honoured only when it names, exactly, an endpoint an operator allowed. Both the allowlist
entries and the candidate URL are parsed (never compared as text) and normalised the same way:

- only ``http`` and ``https``, scheme and host lower-cased; one trailing dot of a host name dropped; a non-ASCII
  host name IDNA-encoded (Python's ``idna`` codec, which also folds full-width letters and dots; a host that
  only becomes an IP address by that folding, e.g. full-width digits, is refused);
- refused outright: ASCII control characters, whitespace, backslashes, non-ASCII text outside the host, any
  ``%`` escape (so no percent-encoded host, dot segment or slash), ``.``/``..`` path segments, user info
  (``user:pw@``), a query or a fragment (even empty ones), an empty or non-decimal or zero-padded port;
- a host is either a canonical host name (letters, digits, ``-`` and ``_``, labels of 1-63 characters) or a
  canonical IP literal: dotted-quad IPv4 without leading zeros, or IPv6 in brackets. Any other numeric form that
  a resolver would read as an address (``127.1``, ``0x7f.0.0.1``, ``2130706433``, ``0177.0.0.1``, a host whose
  last label is a number) is refused, so an address can never hide behind another spelling.

An entry matches a URL when the scheme is the same, the host is the same (IP literals compared as
`ipaddress` objects, so ``[::ffff:127.0.0.1]`` is not ``127.0.0.1``), the port is the same (an entry without a
port allows only the scheme's default port, 80 or 443; ``:*`` allows any port), and the entry's path is a prefix
of the URL's on segment boundaries (``/v1`` allows ``/v1`` and ``/v1/x``, not ``/v10``; no path allows every
path). An entry that does not parse by these rules is a start-up error.

A URL that is allowed is used in its canonical spelling (`CanonicalUrl.text`), so the HTTP client connects to
exactly what was checked, whatever its own parser would have made of the original text.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

__all__ = ["AllowRule", "CanonicalUrl", "UrlAllowlist", "UrlRefused", "compile_allowlist", "parse_rule", "parse_url"]

DEFAULT_PORTS = {"http": 80, "https": 443}
ANY_PORT = "*"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# The WHATWG URL standard's "ends in a number": such a host is parsed as an IPv4 address, in any of its forms.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")
# RFC 3986 path characters (pchar and "/"), without "%": escapes are refused rather than decoded.
_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_MAX_HOST_LENGTH = 253


class UrlRefused(ValueError):
    """A URL (or allowlist entry) that does not parse by the rules above; the message says which one it broke."""


@dataclass(frozen=True, slots=True)
class CanonicalUrl:
    """A parsed base URL: scheme, host (a lower-case ASCII name or an IP address), explicit port, path."""

    scheme: str
    host: str | IpAddress
    port: int
    path: str  # "" or starting with "/", kept as given (a trailing slash too)

    @property
    def text(self) -> str:
        """The URL in canonical spelling, the default port left out."""
        host = f"[{self.host}]" if isinstance(self.host, ipaddress.IPv6Address) else str(self.host)
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One allowlist entry: scheme, host, port (None: any) and a path prefix ("" allows every path)."""

    scheme: str
    host: str | IpAddress
    port: int | None
    path: str  # without its trailing slash

    def allows(self, url: CanonicalUrl) -> bool:
        if (url.scheme, url.host) != (self.scheme, self.host):
            return False
        if self.port is not None and url.port != self.port:
            return False
        return not self.path or url.path == self.path or url.path.startswith(self.path + "/")


@dataclass(frozen=True, slots=True)
class UrlAllowlist:
    """The parsed `allowed_base_urls`."""

    rules: tuple[AllowRule, ...]

    def check(self, url: str) -> CanonicalUrl:
        """`url` parsed and canonical, if an entry allows it; raises `UrlRefused` saying why not otherwise."""
        parsed = parse_url(url)
        if not any(rule.allows(parsed) for rule in self.rules):
            raise UrlRefused(f"{parsed.text} is not on this server's allowlist")
        return parsed

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
        except UrlRefused:
            return False
        return True


def parse_url(url: str) -> CanonicalUrl:
    """A candidate base URL, parsed and normalised; raises `UrlRefused` for anything the rules refuse."""
    scheme, host, port, path = _split(url, allow_any_port=False)
    assert port is not None  # only an allowlist entry may say "any port"
    return CanonicalUrl(scheme, host, port, path)


def parse_rule(entry: str) -> AllowRule:
    """An allowlist entry, parsed; raises `UrlRefused` for an entry that is not a valid URL by the same rules."""
    scheme, host, port, path = _split(entry, allow_any_port=True)
    return AllowRule(scheme, host, port, path.rstrip("/"))


@functools.lru_cache(maxsize=32)
def compile_allowlist(entries: tuple[str, ...]) -> UrlAllowlist:
    """The allowlist of `entries` (parsed once per distinct tuple: settings are frozen)."""
    return UrlAllowlist(tuple(parse_rule(entry) for entry in entries))


def _split(url: str, *, allow_any_port: bool) -> tuple[str, str | IpAddress, int | None, str]:
    if not isinstance(url, str) or not url:
        raise UrlRefused("a URL must be non-empty text")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in url):
        raise UrlRefused("the URL contains a control character or whitespace")
    for character, what in (("\\", "a backslash"), ("%", "a percent-escape"), ("?", "a query"), ("#", "a fragment")):
        if character in url:
            raise UrlRefused(f"the URL contains {what}")
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS:
        raise UrlRefused("the URL must start with http:// or https://")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if "@" in authority:
        raise UrlRefused("the URL carries user info (user:password@); send credentials in the credential instead")
    if not _PATH.fullmatch(path):
        raise UrlRefused("the URL's path contains characters outside RFC 3986's unescaped path characters")
    # "..;" counts too: some servers drop a segment's ";parameters" before resolving dot segments.
    if any(segment.partition(";")[0] in (".", "..") for segment in path.split("/")):
        raise UrlRefused("the URL's path contains a '.' or '..' segment")
    host_text, port_text = _host_and_port(authority)
    host = _host(host_text)
    if port_text is None:
        port: int | None = DEFAULT_PORTS[scheme]
    elif port_text == ANY_PORT and allow_any_port:
        port = None
    elif _PORT.fullmatch(port_text) and int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise UrlRefused("the URL's port is not a decimal number from 1 to 65535 without leading zeros")
    return scheme, host, port, path


def _host_and_port(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise UrlRefused("the URL's IPv6 address has no closing bracket")
        if after and not after.startswith(":"):
            raise UrlRefused("the URL has text after its IPv6 address")
        return "[" + host + "]", (after[1:] if after else None)
    host, colon, port = authority.partition(":")
    return host, (port if colon else None)


def _host(text: str) -> str | IpAddress:
    if text.startswith("["):
        try:
            return ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise UrlRefused("the URL's bracketed host is not an IPv6 address") from None
    try:
        # The codec lower-cases and maps (full-width dots and digits too), so the checks below see the result.
        name = text.encode("idna").decode("ascii").lower() if not text.isascii() else text.lower()
    except UnicodeError:
        raise UrlRefused("the URL's host is not a valid internationalised host name") from None
    name = name.removesuffix(".")
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if not text.isascii():
            raise UrlRefused("the URL's host is an IP address written with non-ASCII characters")
        try:
            address = ipaddress.IPv4Address(name)
        except ValueError:
            raise UrlRefused("the URL's host is a number but not a canonical dotted-quad IPv4 address") from None
        if str(address) != name:
            raise UrlRefused("the URL's host is not a canonical dotted-quad IPv4 address")
        return address
    if len(name) > _MAX_HOST_LENGTH or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlRefused("the URL's host is not a valid host name")
    return name
