"""HTML for the console, escaped by default: data becomes text unless it is :class:`Markup` built here.

Agent names, alert titles, messages and reasons come from whoever publishes events, so every value that goes
into a page passes through :func:`h`; only markup this package builds is wrapped as :class:`Markup` and kept.

>>> h("<script>alert(1)</script>")
'&lt;script&gt;alert(1)&lt;/script&gt;'
>>> h(Markup("<b>kept</b>")), h(None), h(0.123456)
('<b>kept</b>', '', '0.1235')
>>> str(table(["agent"], [["<i>x</i>"]]))
'<table><thead><tr><th>agent</th></tr></thead><tbody><tr><td>&lt;i&gt;x&lt;/i&gt;</td></tr></tbody></table>'
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode


class Markup(str):
    """Text that is already HTML (built by this package): :func:`h` keeps it as it is."""


def h(value: Any) -> str:
    """``value`` as HTML text: escaped, numbers rounded for reading, None as nothing; :class:`Markup` kept."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value), quote=True)


def join(parts: Iterable[Any]) -> Markup:
    """Pieces of HTML (each escaped unless :class:`Markup`) as one."""
    return Markup("".join(h(p) for p in parts))


_VOID = frozenset({"input", "br", "meta", "link", "img"})


def tag(element: str, content: Any = "", /, **attrs: Any) -> Markup:
    """``<element attrs>content</element>``; attribute values escaped (``class_`` for ``class``), None ones left
    out, ``data_x`` as ``data-x``."""
    text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{html.escape(str(v), quote=True)}"'
        for k, v in attrs.items()
        if v is not None
    )
    if element in _VOID:
        return Markup(f"<{element}{text}>")
    return Markup(f"<{element}{text}>{h(content)}</{element}>")


def link(path: str, text: Any, **query: Any) -> Markup:
    """A link to a console page, the query string encoded (names with any characters survive)."""
    query = {k: v for k, v in query.items() if v not in (None, "")}
    return tag("a", text, href=path + ("?" + urlencode(query) if query else ""))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "(none)", **attrs: Any) -> Markup:
    """A table of ``rows`` under ``columns``; a line saying ``empty`` when there are none."""
    body = [join(tag("td", cell) for cell in row) for row in rows]
    if not body:
        return tag("p", empty, class_="empty")
    head = tag("thead", tag("tr", join(tag("th", c) for c in columns)))
    return tag("table", join([head, tag("tbody", join(tag("tr", r) for r in body))]), **attrs)


def form(action: str, fields: dict[str, Any], button: str, *, css: str = "", confirm: str = "") -> Markup:
    """A POST form to ``action`` with hidden ``fields`` and one button."""
    hidden = join(tag("input", "", type="hidden", name=k, value=v) for k, v in fields.items())
    return tag(
        "form",
        join([hidden, tag("button", button, type="submit", class_=css or None, data_confirm=confirm or None)]),
        method="post",
        action=action,
        class_="inline",
    )


def page(title: str, active: str, body: Any, *, notice: str = "", refresh: int = 10) -> Markup:
    """A whole page: head, the navigation (``active`` highlighted), an optional notice, ``body``."""
    nav = join(
        tag("a", label, href=href, class_="active" if key == active else None)
        for key, label, href in (
            ("fleet", "Fleet", "/"),
            ("agents", "Agents", "/agents"),
            ("drift", "Drift", "/drift"),
            ("alerts", "Alerts", "/alerts"),
            ("proposals", "Proposals", "/proposals"),
        )
    )
    return Markup(
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} · reverify</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        f'<body data-refresh="{int(refresh)}"><header><span class="brand">reverify</span><nav>{nav}</nav>'
        '<span class="updated" id="updated"></span></header>'
        f"<main>{tag('p', notice, class_='notice error' if notice.startswith('error') else 'notice') if notice else ''}"
        f"{tag('h1', title)}{h(body)}</main>"
        "</body></html>"
    )
