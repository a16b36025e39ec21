"""Inline SVG, checked: the one piece of markup a page includes without escaping.

matplotlib escapes the text it draws, so plots of hostile names are safe already; this
check makes that a verified property rather than an assumption. It is an allowlist of what
matplotlib's SVG backend writes (shapes, text, groups, clip paths, local references and a
style sheet): anything else — a script, an event handler, a foreign object, an animation,
a link, a style that imports or fetches — and the plot is not inlined: its place says why.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

ALLOWED_TAGS = {"svg", "defs", "style", "g", "path", "rect", "circle", "ellipse", "line",
                "polyline", "polygon", "text", "tspan", "use", "clippath", "title", "desc"}
ALLOWED_ATTRIBUTES = {"aria-label", "class", "clip-path", "d", "height", "id", "role", "style",
                      "transform", "type", "version", "viewbox", "width", "x", "y", "x1", "x2",
                      "y1", "y2", "cx", "cy", "r", "rx", "ry", "points", "fill", "stroke",
                      "stroke-width", "opacity", "font-size", "font-family", "text-anchor",
                      "href", "space", "preserveaspectratio"}
_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_URL = re.compile(r"url\(\s*(?!['\"]?#)", re.IGNORECASE)  # a url() that is not #local
REFUSED = '<p class="refused">plot left out: its SVG held {what}</p>'


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()


def _fetches(css: str) -> bool:
    return bool(_URL.search(css)) or "@import" in css.lower() or "expression(" in css.lower()


def problem(svg: str) -> str | None:
    """What in `svg` is not known to be inert, or None when all of it is."""
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError as exc:
        return f"markup that does not parse ({exc})"
    if _local(root.tag) != "svg":
        return f"a <{_local(root.tag)}> root instead of <svg>"
    for element in root.iter():
        tag = _local(element.tag)
        if tag not in ALLOWED_TAGS:
            return f"a <{tag}> element"
        if tag == "style" and _fetches(element.text or ""):
            return "a style sheet that imports or fetches"
        for attribute, value in element.attrib.items():
            name = _local(attribute)
            if name not in ALLOWED_ATTRIBUTES:
                return f"an attribute {name!r}"
            if name == "href" and not value.startswith("#"):
                return "a link outside the plot"
            if _fetches(value):
                return "a reference outside the plot"
    return None


def safe_svg(svg: str) -> str:
    """The SVG without its XML prologue, ready to inline; a refusal note if not inert."""
    body = _PROLOGUE.sub("", svg, count=1)
    what = problem(body)
    return REFUSED.format(what=what.replace("<", "&lt;").replace(">", "&gt;")) if what else body
