"""Dashboard file names and inline SVG: hostile names never escape, nothing inert runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.report.dashboard.names import inside, page_name, slug
from bench.report.dashboard.svg import problem, safe_svg

HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "../../etc/passwd",
           "x" * 300, "Модель-量子 ✓", ".hidden", "..", "/", "a/b", "a-b", "", "con", "\x00nul"]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_page_name_is_one_safe_component(name):
    made = page_name("device", name)
    assert len(made.encode()) <= 100  # far under the 255-byte limit
    assert made == Path(made).name and not made.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in made)


def test_distinct_names_get_distinct_pages():
    names = HOSTILE + ["a b", "a_b", "A-B", "x" * 301]
    assert len({slug(n) for n in names}) == len(names)


def test_a_slug_keeps_a_readable_part():
    assert slug("mobilenet_v2@160,alpha=0.5").startswith("mobilenet_v2-160-alpha-0-5-")
    assert slug("Модель").isalnum()  # only the hash: nothing ASCII to keep


def test_inside_refuses_a_path_outside_the_folder(tmp_path):
    assert inside(tmp_path, tmp_path / "index.html") == tmp_path / "index.html"
    with pytest.raises(UsageError, match="outside"):
        inside(tmp_path, tmp_path / ".." / "index.html")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(UsageError, match="outside"):
        inside(tmp_path, tmp_path / "link" / "passwd")


SVG = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">{}</svg>'


@pytest.mark.parametrize("body, what", [
    ("<script>alert(1)</script>", "script"),
    ('<g onload="alert(1)"/>', "onload"),
    ("<foreignObject><div/></foreignObject>", "foreignobject"),
    ('<a xlink:href="https://example.com/x"><text>t</text></a>', "<a>"),
    ('<use xlink:href="https://example.com/x#m"/>', "link outside"),
    ('<image href="http://example.com/i.png"/>', "image"),
    ('<rect style="fill: url(http://example.com/x)"/>', "reference outside"),
    ('<rect style="fill: url(#a); stroke: url(http://example.com/x)"/>', "reference outside"),
    ("<style>@import 'http://example.com/x.css';</style>", "imports or fetches"),
    ('<set attributeName="href" to="javascript:alert(1)"/>', "set"),
    ('<animate attributeName="href"/>', "animate"),
    ('<meta http-equiv="refresh" content="0;url=http://example.com"/>', "meta"),
])
def test_svg_that_could_run_or_fetch_is_refused(body, what):
    svg = SVG.format(body)
    assert what in problem(svg)
    assert "<script" not in safe_svg(svg) and "plot left out" in safe_svg(svg)


def test_inert_svg_is_inlined_without_its_prologue():
    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n' + \
        SVG.format('<defs><path id="m1" d="M0 0"/></defs><use xlink:href="#m1"/>'
                   '<rect clip-path="url(#p1)"/><text>&lt;script&gt;</text>')
    out = safe_svg(svg)
    assert out.startswith("<svg") and "&lt;script&gt;" in out
    assert problem("<svg") is not None  # not XML at all
