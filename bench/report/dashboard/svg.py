"""Inline SVG, checked: the one piece of markup a page includes without escaping.

matplotlib escapes the text it draws, so plots of hostile names are safe already; this
check makes that a verified property rather than an assumption. A plot holding anything
that could run or fetch (a script, an event handler, a foreign object, a link or an
image outside the document) is not inlined: its place says why.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

FORBIDDEN_TAGS = {"script", "foreignobject", "iframe", "object", "embed", "image"}
_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
REFUSED = '<p class="refused">plot left out: its SVG held {what}</p>'


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower()


def problem(svg: str) -> str | None:
    """What in `svg` could run or fetch, or None when it is inert."""
    try:
        root = ElementTree.fromstring(svg)
    except ElementTree.ParseError as exc:
        return f"markup that does not parse ({exc})"
    if _local(root.tag) != "svg":
        return f"a <{_local(root.tag)}> root instead of <svg>"
    for element in root.iter():
        tag = _local(element.tag)
        if tag in FORBIDDEN_TAGS:
            return f"a <{tag}> element"
        for attribute, value in element.attrib.items():
            name = _local(attribute)
            if name.startswith("on"):
                return f"an event handler ({name})"
            if name == "href" and not value.startswith("#"):
                return "a link outside the plot"
            if "url(" in value.replace(" ", "") and "url(#" not in value.replace(" ", ""):
                return "a reference outside the plot"
    return None


def safe_svg(svg: str) -> str:
    """The SVG without its XML prologue, ready to inline; a refusal note if not inert."""
    body = _PROLOGUE.sub("", svg, count=1)
    what = problem(body)
    return REFUSED.format(what=what.replace("<", "&lt;").replace(">", "&gt;")) if what else body
