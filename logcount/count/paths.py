"""Request targets to the paths counted: RFC 3986 normalisation (section 6.2.2),
the kept query parameters, and every path capped in bytes."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode

from logcount.count.format_atoms import clf_value

NO_PATH = "-"  # no request line: Apache could not read one (a 408 logs "-")
NO_PATH_BYTES = NO_PATH.encode()
# A request line that is not HTTP (RTSP's and SIP's OPTIONS, FTP's USER, a TLS handshake,
# a line of another protocol on port 80): one key for all, never a key per line.
NOT_HTTP = "(not http)"
KEYS_NOT_PATHS = (NO_PATH, NOT_HTTP, "*")  # the path keys that start with no "/"
# Every member is capped in bytes (UTF-8), whatever a log line holds, so that a flood of
# long values costs bounded memory in the reader, Redis and the store.
MAX_PATH_BYTES = 512

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _pct_normalise(hexdigits: bytes) -> bytes:
    byte = int(hexdigits, 16)
    if byte in _UNRESERVED:
        return bytes([byte])
    return b"%" + hexdigits.upper()


def pct_normalise(path: bytes) -> bytes:
    """Escapes of unreserved characters decoded, the others in upper case, and every stray
    `%` (one that starts no escape) written `%25`: decoding never makes a `%` (it is not
    unreserved), so a second pass finds the same escapes and changes nothing ("%%32%65"
    is "%252e", never "%2e", which a second pass would read as ".")."""
    parts = _PCT.split(path)  # literal bytes, then the hex digits of an escape, ...
    return b"".join(
        _pct_normalise(part) if i % 2 else part.replace(b"%", b"%25")
        for i, part in enumerate(parts)
    )


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 section 5.2.4."""
    if b"." not in path:
        return path
    out: list[bytes] = []
    segments = path.split(b"/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == b".":
            if last:
                out.append(b"")
        elif seg == b"..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(seg)
    result = b"/".join(out)
    if path.startswith(b"/") and not result.startswith(b"/"):
        result = b"/" + result
    return result


_PARTIAL_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?)?$")
_PARTIAL_PCT = re.compile(r"%[0-9A-Fa-f]?$")


def truncate_utf8(text: str, limit: int = MAX_PATH_BYTES) -> str:
    """At most `limit` bytes of UTF-8, cut between characters (and not inside the `\\xhh`
    that shows a byte that is not UTF-8, nor inside a `%xx` escape)."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    cut = raw[:limit].decode("utf-8", "ignore")
    if "\\" in cut[-3:]:
        cut = _PARTIAL_ESCAPE.sub("", cut)
    if "%" in cut[-2:]:
        cut = _PARTIAL_PCT.sub("", cut)
    return cut


def normalise_target(target: bytes, keep_query: tuple[str, ...] = ()) -> str:
    """A request target (as received) -> the normalised path we count: a path (it starts
    with `/`), the path of an absolute URL, `*`, NO_PATH for none, and NOT_HTTP for
    anything else (`sip:nm`, `anonymous`, a TLS handshake read as text)."""
    if not target or target == NO_PATH_BYTES:
        return NO_PATH
    if target == b"*":
        return "*"
    if target[:1] != b"/":
        if not _looks_absolute(target):
            return NOT_HTTP
        # absolute-form (proxies): drop scheme and authority. Cut by hand: urlsplit raises
        # on a malformed authority ("http://[x/"), and a reader must not stop on bad data.
        rest = target.partition(b"://")[2]
        ends = [i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0]
        target = rest[min(ends) :] if ends else b""
        if not target.startswith(b"/"):
            target = b"/" + target
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    if b"%" in path:
        path = pct_normalise(path)
    path = remove_dot_segments(path)  # a path starting with "/" keeps it
    if _CONTROL.search(path):
        path = _CONTROL.sub(_escaped, path)
    text = _cut_path(path.decode("utf-8", "backslashreplace"))
    if keep_query and query:
        text += _kept_query(query, keep_query, MAX_PATH_BYTES - len(text.encode()))
    return text


# Control bytes (Apache logs them as \xhh) are no URI characters: written as their escape
# ("%00", "%1B"), a key holds none, so it can be shown, typed and passed as an argument
# (a NUL cannot be) and is found again as it is shown.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _escaped(m: re.Match[bytes]) -> bytes:
    return b"%%%02X" % m.group()[0]


_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")


def _looks_absolute(target: bytes) -> bool:
    """An absolute-form target (a proxy's "http://host/path"): a scheme, then "://"."""
    return _SCHEME.match(target) is not None


def _cut_path(text: str) -> str:
    """At most MAX_PATH_BYTES; a cut that leaves a last segment of "." or ".." drops it,
    as it is no dot segment (which a second normalisation would resolve)."""
    cut = truncate_utf8(text)
    if cut is not text and cut.rpartition("/")[2] in (".", ".."):
        cut = cut[: cut.rfind("/") + 1]
    return cut


def _kept_query(query: bytes, keep: tuple[str, ...], room: int) -> str:
    """The kept parameters (after a "?"), sorted, as many as fit in `room` bytes: whole
    parameters only, as half of one would read as another value."""
    pairs = parse_qsl(query.decode("utf-8", "backslashreplace"), keep_blank_values=True)
    kept = sorted((k, v) for k, v in pairs if k in keep)
    out = ""
    for pair in kept:
        more = ("&" if out else "?") + urlencode([pair])
        if len(out) + len(more) > room:  # urlencode writes ASCII: characters are bytes
            break
        out += more
    return out


_METHOD = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z")  # an RFC 9110 token (M-SEARCH)
# The protocol word that ends a request line: HTTP/1.1, and RTSP/1.0, SIP/2.0, ... (dropped)
_PROTOCOL = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*/[0-9]+(?:\.[0-9]+)?\Z")


def request_target(request_line: bytes) -> bytes | None:
    """The target of a %r request line ("GET /a?b HTTP/1.1" -> b"/a?b"), its protocol word
    dropped whatever the protocol ("OPTIONS / RTSP/1.0" -> b"/"); None when there is no
    request line ("-", empty); b"" when it is no method and target (a TLS handshake)."""
    line = clf_value(request_line)
    if not line:
        return None
    method, sep, rest = line.partition(b" ")
    if not sep or not _METHOD.match(method):
        return b""
    target, sep, proto = rest.rpartition(b" ")
    if not sep or not _PROTOCOL.match(proto):
        target = rest  # HTTP/0.9 or a truncated line: the rest is the target
    return target


def section_of(path: str, depth: int) -> str:
    """The section of `path` at `depth` (`top --by path --depth N`): the path cut after its
    Nth segment's slash, `/blog/2015/a` at depth 1 -> `/blog/`, at depth 2 -> `/blog/2015/`;
    a path of fewer segments stays itself, and a key that is not a path (`(other)`, `-`)
    too."""
    if not path.startswith("/"):
        return path
    end = 0
    for _ in range(depth):
        end = path.find("/", end + 1)
        if end < 0:
            return path
    return path[: end + 1]
