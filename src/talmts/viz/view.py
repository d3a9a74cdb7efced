"""The pages of the results site (``talmts view``, ``talmts detect``): static HTML that opens from disk.

Every page is one file: the style sheet and the script (``assets/view.css``, ``assets/view.js``) are inlined and
the page's data is embedded as JSON, so a page needs no server and no network. The script draws the page from
that data (``"page"``: "index", "video" or "diagnosis"). Writers take plain data (lists, dicts, numbers,
relative paths); computing it is the caller's job.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from talmts.fileio import atomic_write_text

ASSETS = Path(__file__).parent / "assets"
PAGE_KINDS = ("index", "video", "diagnosis")


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: no "<" at all (as \\u003c), so neither "</script>" nor "<!--" in a
    label can end or derail the element; JSON.parse reads the escapes back."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_page(
    path: str | Path,
    *,
    kind: str,
    title: str,
    data: dict[str, Any],
    nav: Sequence[tuple[str, str | None]] = (),
    subtitle: str | None = None,
) -> Path:
    """One page of the site. ``nav``: (label, relative href) links in the header; href None marks this page;
    ``subtitle``: a line beside the title (what the page scored), in the HTML itself so it shows without the script."""
    if kind not in PAGE_KINDS:
        raise ValueError(f"unknown page kind {kind!r}: use one of {PAGE_KINDS}")
    links = "".join(
        f"<a class='here'>{html.escape(label)}</a>"
        if href is None
        else f"<a href='{html.escape(href, quote=True)}'>{html.escape(label)}</a>"
        for label, href in nav
    )
    sub = f"<p class='subtitle'>{html.escape(subtitle)}</p>" if subtitle else ""
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_asset('view.css')}</style></head><body>"
        f"<header><h1>{html.escape(title)}</h1>{sub}<nav>{links}</nav></header>"
        "<main id='app'><noscript>This page draws itself with JavaScript; please enable it.</noscript></main>"
        f"<script type='application/json' id='talmts-data'>{embed_json({'page': kind, **data})}</script>"
        f"<script>{_asset('view.js')}</script></body></html>\n"
    )
    atomic_write_text(path, page)
    return Path(path)
