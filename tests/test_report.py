"""report.html: every run writes one self-contained page; `harness report`
rebuilds it or puts two runs side by side; a real browser renders it with its
images and tables (headless Chromium, the Debian package)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An exp17 run whose checks pass, and one with a trial that fails (its
    error message carries HTML, which the page must show as text)."""
    out = tmp_path_factory.mktemp("runs")
    engine = out / "bad_engine.py"
    engine.write_text(
        "from engine import Variable, Function, add, mul, sub, neg, exp\n"
        "from engine import square as _square\n"
        "calls = [0]\n"
        "def square(x):\n"
        "    calls[0] += 1\n"
        "    if calls[0] > 4:\n"
        "        raise ValueError('square <b>refuses</b> its fifth call')\n"
        "    return _square(x)\n")
    good = harness.run("exp17", params={"iterations": 3, "size": 1000}, out=out, progress=False)
    bad = harness.run("exp17", variants=["weakref", f"file:{engine}"], params={"iterations": 3, "size": 1000},
                      out=out, progress=False)
    return {"good": good.path, "bad": bad.path}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_every_run_writes_a_self_contained_report(runs: dict[str, Path]) -> None:
    page = (runs["good"] / "report.html").read_text()
    assert json.loads((runs["good"] / "meta.json").read_text())["report"] == "report.html"
    assert "with weakref outputs a dropped graph is freed immediately" in page  # the claim
    assert page.count("<h2>") >= 5 and ">ok</span>" in page
    assert "checks 6 passed, 0 failed" in page and page.count(">PASS<") == 6
    # The plots are inside the page; nothing is fetched from anywhere.
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)) >= 2
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page) and "<script" not in page
    # measured beside expected (and strongref's bound, none for weakref): 32,000 at the end, 64,000 at the peak
    weakref_row = next(row for row in page.split("<tr") if ">weakref<" in row)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", weakref_row)
    assert cells[cells.index("32,000"):cells.index("32,000") + 5] == ["32,000", "32,000", "-", "64,000", "64,000"]


def test_a_failed_trial_shows_its_error_and_traceback_as_text(runs: dict[str, Path]) -> None:
    page = (runs["bad"] / "report.html").read_text()
    assert ">failed</span>" in page and "<h2>Failed trials</h2>" in page
    assert "square &lt;b&gt;refuses&lt;/b&gt; its fifth call" in page and "<b>refuses</b>" not in page
    assert "Traceback (most recent call last)" in page and "bad_engine.py" in page


def test_report_rebuilds_a_run_and_puts_two_side_by_side(runs: dict[str, Path], tmp_path: Path) -> None:
    (runs["good"] / "report.html").unlink()
    rebuilt = cli("report", str(runs["good"]), cwd=tmp_path)
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == str(runs["good"] / "report.html")
    assert "checks 6 passed" in (runs["good"] / "report.html").read_text()

    both = cli("report", str(runs["good"]), str(runs["bad"]), cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    page = (tmp_path / both.stdout.strip()).read_text()
    assert page.count('class="side"') >= 3 and ">ok</span>" in page and ">failed</span>" in page
    assert "Compared (A as the baseline)" in page and "numpy_bytes_final" in page

    again = cli("report", str(runs["good"]), str(runs["bad"]), cwd=tmp_path)  # never over a file
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "exists" in again.stderr
    assert cli("report", "a", "b", "c", cwd=tmp_path).returncode == 2
    not_html = cli("report", str(runs["good"]), "--out", "page.txt", cwd=tmp_path)
    assert not_html.returncode == 2 and "an .html file" in not_html.stderr


# Run in the browser: every image decoded, the tables laid out. The page has
# no script of its own; the test's copy gets one that reports what rendered.
PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);
  const tables = [...document.querySelectorAll('table')].map(t => [t.rows.length, t.offsetWidth]);
  document.body.setAttribute('data-rendered', JSON.stringify({images, tables}));
});
</script></body>"""


def test_the_report_renders_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium); CI requires it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "report.html"
    page.write_text((runs["good"] / "report.html").read_text().replace("</body>", PROBE))
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"data-rendered=\"([^\"]*)\"", dom.stdout)
    assert found, dom.stderr[-2000:]
    rendered = json.loads(found.group(1).replace("&quot;", '"'))
    assert {alt for alt, *_ in rendered["images"]} >= {"memory.png", "summary.png"}
    assert all(done and width > 300 and height > 200 for _, done, width, height in rendered["images"])
    assert len(rendered["tables"]) >= 3 and all(rows >= 2 and width > 0 for rows, width in rendered["tables"])
    # The screenshot, kept beside the test's files to look at: not blank.
    shot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000
