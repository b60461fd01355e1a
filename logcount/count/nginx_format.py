"""nginx `log_format` strings, turned into the Apache LogFormat that reads the same lines.

Every nginx variable logcount counts has an Apache directive whose field apachelogs
reads the same way (`$remote_addr` is `%h`, `$request` is `%r`, ...), so an nginx format
is compiled, checked and counted as that Apache format: one grammar, one C scanner plan,
one differential test against apachelogs. nginx escapes `"`, `\\` and bytes outside
printable ASCII as `\\xHH` in a variable's value, which Apache's string fields accept.

`$request_time` (seconds with three decimals, "0.125") has no Apache twin: it is written
as the note REQUEST_TIME_NOTE, which logformat.py reads as a duration in milliseconds with
a decimal point (format_atoms.MILLIS). Variables logcount does not count are kept as
fields it skips (a note).
"""

from __future__ import annotations

import re

# nginx's built-in `combined`, and the `main` of the nginx.conf every package ships.
NGINX_COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
NGINX_MAIN = NGINX_COMBINED + ' "$http_x_forwarded_for"'
PRESETS = {"nginx": NGINX_MAIN, "nginx_combined": NGINX_COMBINED}

# The note an nginx `$request_time` becomes (see format_atoms.MILLIS).
REQUEST_TIME_NOTE = "%{nginx.request_time}n"
# $time_iso8601 (2026-03-14T10:00:00+01:00): apachelogs' %z has no colon, so the offset is
# a note that logformat.py reads (slower: such a format always takes apachelogs' path).
TIME_ISO8601 = "%{%Y-%m-%dT%H:%M:%S}t%{nginx.iso8601_offset}n"
# The time as Apache's %t writes it inside its brackets, for a `$time_local` without them.
_TIME_LOCAL_BARE = "%{%d/%b/%Y:%H:%M:%S %z}t"

# nginx variable -> the Apache directive of the same field. Variables not listed here
# become notes (`%{name}n`): fields read and skipped; `$http_NAME` a request header.
VARIABLES = {
    "remote_addr": "%h",
    "remote_user": "%u",
    "time_local": _TIME_LOCAL_BARE,
    "time_iso8601": TIME_ISO8601,
    "request": "%r",
    "status": "%>s",
    "body_bytes_sent": "%B",
    "bytes_sent": "%O",
    "http_referer": "%{Referer}i",
    "http_user_agent": "%{User-Agent}i",
    "http_x_forwarded_for": "%{X-Forwarded-For}i",
    "request_time": REQUEST_TIME_NOTE,
    "host": "%v",
    "server_name": "%v",
    "request_method": "%m",
    "request_uri": "%U%q",
}

_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
# A format as it stands in nginx.conf: `log_format main [escape=...] '...' '...';`
_DIRECTIVE_HEAD = re.compile(r"^\s*log_format\s+\S+\s+(?:escape=\S+\s+)?")
_QUOTED_PIECE = re.compile(r"""\s*(?:'([^']*)'|"((?:[^"\\]|\\.)*)")""")
# An Apache directive (`%h`, `%>s`, `%{Referer}i`): its presence makes a format Apache's.
_APACHE_DIRECTIVE = re.compile(r"%[<>!,0-9]*(?:\{[^}]*\})?[a-zA-Z%]")


def is_nginx(log_format: str) -> bool:
    """An nginx format: it has a `$variable` and no Apache `%` directive (an Apache
    format may hold a literal `$`)."""
    return bool(_VARIABLE.search(log_format)) and not _APACHE_DIRECTIVE.search(log_format)


def unquote(log_format: str) -> str:
    """The format nginx would log, from what was copied out of nginx.conf: the quoted
    pieces joined (`'$remote_addr - ' '"$request"'`), a `log_format NAME` head and a
    final `;` removed. Anything else is returned as it is, but for `\\"` (a quote
    escaped inside a double-quoted piece)."""
    text = _DIRECTIVE_HEAD.sub("", log_format).strip().removesuffix(";").rstrip()
    if text[:1] not in ("'", '"'):
        return log_format.replace('\\"', '"')  # copied from inside a "..." piece
    pieces, pos = [], 0
    while pos < len(text):
        m = _QUOTED_PIECE.match(text, pos)
        if m is None:
            return log_format  # not a list of quoted pieces: the format as written
        single, double = m.groups()
        pieces.append(single if single is not None else re.sub(r"\\(.)", r"\1", double))
        pos = m.end()
    return "".join(pieces)


def to_apache(log_format: str) -> str:
    """The Apache LogFormat of an nginx format: variables to directives, `[$time_local]`
    to `%t`, a literal `%` to `%%`."""
    text = unquote(log_format)
    out, pos = [], 0
    for m in _VARIABLE.finditer(text):
        out.append(text[pos : m.start()].replace("%", "%%"))
        name = m.group(1) or m.group(2)
        out.append(_directive(name))
        pos = m.end()
    out.append(text[pos:].replace("%", "%%"))
    return "".join(out).replace(f"[{_TIME_LOCAL_BARE}]", "%t")


def _directive(name: str) -> str:
    if name in VARIABLES:
        return VARIABLES[name]
    if name.startswith("http_"):
        return "%{" + name.removeprefix("http_").replace("_", "-") + "}i"
    return "%{" + name + "}n"
