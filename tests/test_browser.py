"""The report in a real browser: headless Chromium (Debian's ``chromium``) through Playwright.

A real run on Cranfield (BM25 -> a tiny cross-encoder), ``evalkit-decide`` then
``evalkit-report`` as a user runs them; then the page is opened at 1,400 and 1,000 px:
the verdict is the first thing on it, the headline fits 1,000 px without horizontal
scrolling, every figure has a caption and alt text, and the per-query view opens a query
and shows its documents. Screenshots go to ``$EVALKIT_SCREENSHOTS`` when it is set
(``docs/images/`` is filled that way), else to the test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .test_e2e import bm25_to_tiny_ce, evalkit_cli, evalkit_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not os.environ.get("CI"),
        reason="needs Debian's chromium (apt-get install chromium); CI installs it",
    ),
]


@pytest.fixture(scope="module")
def report_folder(tmp_path_factory, tiny_cross_encoder, session_cache) -> Path:
    root = tmp_path_factory.mktemp("browser")
    evalkit_run(
        *bm25_to_tiny_ce(
            session_cache,
            tiny_cross_encoder,
            "latency.max_queries=30",
            f"hydra.run.dir={root / 'bm25-ce'}",
        )
    )
    decided = evalkit_cli("decide", str(root), "--p95-ms", "5000")
    assert decided.returncode == 0, decided.stderr
    reported = evalkit_cli("report", str(root), "--bootstrap", "300")
    assert reported.returncode == 0, reported.stderr
    return root / "report"


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def shots() -> Path | None:
    folder = os.environ.get("EVALKIT_SCREENSHOTS")
    return Path(folder) if folder else None


def test_the_verdict_comes_first_and_the_headline_fits_1000px(browser, report_folder, tmp_path):
    decision = json.loads((report_folder.parent / "decision.json").read_text())
    for width in (1400, 1000):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto((report_folder / "report.html").as_uri())
        first = page.evaluate(
            "document.querySelector('h1').nextElementSibling.id"
        )  # the first block after the title
        assert first == "verdict"
        verdict = page.inner_text("#verdict")
        assert decision["message"] in verdict and "Budget: p95 ≤ 5,000.0 ms" in verdict
        table = page.locator("h2:text('Headline') ~ div.scroll table").first
        box = table.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, (width, box)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"the page scrolls sideways at {width}px ({overflow}px)"
        out = shots() or tmp_path
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / f"report_{width}.png"), full_page=False)
        page.close()


def test_every_figure_has_a_caption_and_alt_text(browser, report_folder):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((report_folder / "report.html").as_uri())
    figures = page.evaluate(
        "[...document.querySelectorAll('figure')].map(f => [f.querySelector('img').alt,"
        " f.querySelector('figcaption').innerText, f.querySelector('img').naturalWidth])"
    )
    assert len(figures) >= 2
    for alt, caption, natural in figures:
        assert len(alt) > 20 and len(caption) > 20 and natural > 0  # the SVG decoded
    page.close()


def test_the_per_query_view_opens_a_query_and_shows_its_documents(
    browser, report_folder, tmp_path, cranfield
):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((report_folder / "report.html").as_uri())
    page.click("a[href='queries.html']")
    page.wait_for_selector("#list tr.q")
    rows = page.locator("#list tr.q")
    assert rows.count() == 225  # every Cranfield query
    gains = [float(t) for t in page.locator("#list tr.q td:nth-child(5)").all_inner_texts()]
    assert gains == sorted(gains)  # most hurt first
    page.check("#hurt")
    hurt = page.locator("#list tr.q").count()
    assert hurt == sum(g < 0 for g in gains) and hurt < 225
    first = page.locator("#list tr.q").first
    query_id = first.get_attribute("data-query")
    first.click()
    detail = page.locator("tr.detail")
    assert detail.count() == 1
    text = detail.inner_text()
    assert "first stage top 10" in text and "reranked top 10" in text
    assert detail.locator(".doc").count() == 20
    title = cranfield.corpus.set_index("doc_id").title.astype(str)
    relevant = set(cranfield.qrels[cranfield.qrels.query_id == query_id].doc_id.astype(str))
    shown = [line.split()[2] for line in detail.locator(".doc").all_inner_texts()]
    assert any(title[d][:20] in text for d in shown if title[d].strip())
    marks = detail.locator(".doc .rel").count()  # relevant documents marked
    assert marks == sum(d in relevant for d in shown)
    out = shots() or tmp_path
    page.screenshot(path=str(out / "queries.png"), full_page=False)
    page.close()
