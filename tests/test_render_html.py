"""The HTML view (`rnngraph render --html`, rg.render(..., "x.html")): one self-contained page,
checked structurally here and in a real headless Chromium (skipped when `chromium` is absent):
it loads without console errors, and opening a scope (a click on its box, made through the
page's #expand= address) shows that scope's nodes."""
import json
import re
import shutil
import subprocess
import urllib.parse

import pytest

from rnngraph import examples_registry
from rnngraph.cli import main
from rnngraph.render import render, to_html

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(c)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")


def lstm_gradients():
    ex = examples_registry.build("lstm", grad=True)
    return [v for k, v in ex.fetches.items() if k.startswith("gradient/")]


def page_data(text):
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


@needs_dot
def test_page_is_self_contained_with_one_view_per_folded_scope(tmp_path):
    path = render(lstm_gradients(), tmp_path / "g.html", title="lstm <gradients>")
    text = open(path, encoding="utf-8").read()
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>lstm &lt;gradients&gt;</title>" in text
    # nothing is fetched: no external scripts, styles, images or fonts
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', text)
    assert "http://" not in text.split("<script")[0].replace("http://www.w3.org", "")
    data = page_data(text)
    assert "" in data["views"]  # the collapsed view
    boxes = re.findall(r'id="scope:([^"]+)"', data["views"][""])
    assert "gradients/rnn" in boxes
    assert set(boxes) <= set(data["views"]) | set(data["skipped"])
    opened = data["views"]["gradients/rnn"]
    assert "scope:gradients/rnn\"" not in opened and "loop gradients/rnn/while_grad" in opened
    # no text of the graph can close the script element holding the views
    assert data["views"][""].count("<svg") == 1 and "</script" not in text.split(
        '<script id="data"')[1].split("</script>")[0]


@needs_dot
def test_views_past_the_limit_are_listed_as_skipped():
    text = to_html(lstm_gradients(), max_views=1)
    data = page_data(text)
    assert list(data["views"]) == [""] and data["skipped"]
    with pytest.raises(ValueError, match="max_views"):
        to_html(lstm_gradients(), max_views=0)


@needs_dot
def test_a_view_graphviz_fails_to_lay_out_is_left_out_not_the_page(monkeypatch):
    """graphviz 2.43 loses an edge in some nestings of clusters ("lost n183 n186 edge", a
    review's bidirectional sink_gather program): that view stays closed and says why."""
    import importlib
    from rnngraph.errors import RenderError
    html_mod = importlib.import_module("rnngraph.render.html")
    real, calls = html_mod.layout, []

    def flaky(text, fmt, timeout):
        calls.append(text)
        if len(calls) == 2:   # (the first view opened below the top one)
            raise RenderError("graphviz's `dot` failed (exit 1): Error: lost n1 n2 edge\nmore")
        return real(text, fmt, timeout)
    monkeypatch.setattr(html_mod, "layout", flaky)
    data = page_data(to_html(lstm_gradients()))
    (scope,) = data["failed"]
    assert scope in data["skipped"] and scope not in data["views"] and "" in data["views"]
    assert data["failed"][scope] == "graphviz's `dot` failed (exit 1): Error: lost n1 n2 edge"
    assert len(data["views"]) >= 2   # (the other boxes still open)


@needs_dot
def test_cli_html_flag_writes_a_page(tmp_path, capsys):
    out = tmp_path / "lstm.html"
    assert main(["render", "lstm", "--grad", "--html", "-o", str(out)]) == 0
    assert page_data(out.read_text())["views"]
    assert main(["render", "lstm", "--html", "-o", str(tmp_path / "x.svg")]) == 1
    assert "contradicts" in capsys.readouterr().err


def chromium_dom(url, tmp_path):
    """The DOM after the page ran (headless Chromium), and the console messages it logged."""
    proc = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120)
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


@needs_dot
@needs_chromium
def test_page_loads_in_chromium_without_errors_and_a_click_opens_a_scope(tmp_path):
    path = render(lstm_gradients(), tmp_path / "g.html")
    url = "file://" + urllib.parse.quote(str(path))
    dom, console = chromium_dom(url, tmp_path)
    assert console == [], console
    assert 'data-ready="1"' in dom and 'data-view=""' in dom and "data-errors" not in dom
    stage = dom.split('id="stage"')[1].split('<script id="data"')[0]
    assert 'id="scope:gradients/rnn"' in stage  # the collapsed view, its box drawn
    assert "loop gradients/rnn/while_grad" not in stage

    dom, console = chromium_dom(url + "#expand=gradients/rnn", tmp_path)
    assert console == [], console
    assert 'data-view="gradients/rnn"' in dom and "data-errors" not in dom
    stage = dom.split('id="stage"')[1].split('<script id="data"')[0]
    assert 'id="scope:gradients/rnn"' not in stage
    assert "loop gradients/rnn/while_grad" in stage  # the scope's nodes are on screen now
    assert "back</button>" in dom and 'id="back">' in dom  # back is enabled after a click
