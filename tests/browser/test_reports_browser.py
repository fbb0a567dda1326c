"""Open report.html and the compare pages in headless Chromium over a local http.server.

Checks what a reader sees: every <audio> loads (no error, duration > 0), every <img>
renders, the console has no errors, and a <script> prompt shows as text.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from tests.unit import fake_runs

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCRIPT_PROMPT = "<script>alert(1)</script> jazz trio"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

AUDIO_STATE_JS = """
const done = arguments[arguments.length - 1];
const audios = Array.from(document.querySelectorAll('audio'));
const settle = (a) => new Promise((resolve) => {
  const report = () => resolve({src: a.getAttribute('src'), ready: a.readyState,
      duration: a.duration, error: a.error ? a.error.code : null});
  if (a.readyState >= 1 || a.error) { report(); return; }
  a.addEventListener('loadedmetadata', report, {once: true});
  a.addEventListener('error', report, {once: true});
  a.load();
});
Promise.all(audios.map(settle)).then(done);
"""

# Lazy images below the fold (the listening grid's mels) are switched to eager loading,
# then every image is waited for (up to 10 s): each must load and render, wherever it is.
IMAGE_STATE_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach((img) => { if (img.loading === 'lazy') img.loading = 'eager'; });
const t0 = performance.now();
const poll = () => {
  if (images.every((img) => img.complete) || performance.now() - t0 > 10000) {
    done(images.map((img) => ({src: img.getAttribute('src'), complete: img.complete,
                               width: img.naturalWidth})));
  } else { setTimeout(poll, 50); }
};
poll();
"""


@pytest.fixture(scope="module")
def served_tree(tmp_path_factory, tiny_model):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(
            f"{CHROMIUM} or {CHROMEDRIVER} absent (apt-get install chromium chromium-driver)"
        )
    root = tmp_path_factory.mktemp("browser_tree")
    paths = fake_runs.build_evaluated_tree(root, tiny_model("clap"), n_boot=20)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {"base": base, "root": root, **paths}
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        return


@pytest.fixture(scope="module")
def browser(served_tree, tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def page_url(served_tree, path: Path) -> str:
    return f"{served_tree['base']}/{path.relative_to(served_tree['root']).as_posix()}"


def open_and_check(driver, url: str, min_audio: int, min_images: int) -> None:
    driver.get_log("browser")  # drop entries from earlier pages
    driver.get(url)
    audios = driver.execute_async_script(AUDIO_STATE_JS)
    assert len(audios) >= min_audio, f"{url}: expected >= {min_audio} <audio>, got {audios}"
    for audio in audios:
        assert audio["error"] is None, f"{url}: audio failed to load: {audio}"
        assert audio["ready"] >= 1 and audio["duration"] > 0, f"{url}: audio not loaded: {audio}"
        assert not audio["src"].startswith(("/", "http")), f"non-relative audio src {audio}"
    images = driver.execute_async_script(IMAGE_STATE_JS)
    assert len(images) >= min_images, f"{url}: expected >= {min_images} images, got {images}"
    for image in images:
        assert image["complete"] and image["width"] > 0, f"{url}: image not rendered: {image}"
        assert not image["src"].startswith(("/", "http")), f"non-relative img src {image}"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"{url}: console errors {errors}"


def test_run_report_renders_audio_images_and_escapes_prompt(browser, served_tree):
    run_dir = served_tree["runs"][1]
    open_and_check(browser, page_url(served_tree, run_dir / "report.html"), 3, 5)
    from selenium.webdriver.common.by import By

    prompts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#items .prompt")]
    assert SCRIPT_PROMPT in prompts
    assert browser.find_elements(By.TAG_NAME, "script") == []
    banner = browser.find_element(By.ID, "pipeline-check").text
    assert "pipeline check" in banner and "not music" in banner
    assert "prompt too long" in browser.find_element(By.ID, "skipped").text


def test_compare_index_renders_plots_and_links(browser, served_tree):
    open_and_check(browser, page_url(served_tree, served_tree["report"] / "index.html"), 0, 4)
    from selenium.webdriver.common.by import By

    for details in browser.find_elements(By.CSS_SELECTOR, "details > summary"):
        details.click()  # everything below the key tables is one click away
    for table in ("aggregates", "primary", "set-diffs", "reference-composition"):
        assert browser.find_element(By.ID, table).is_displayed(), table
    header = browser.find_element(By.ID, "aggregates").text
    assert (
        "FAD-inf [jackknife CI] (R², fit range)" in header
        and "KAD (kadtk, ×100)" in header
        and "N clips" in header
    )
    assert "Holm p" in browser.find_element(By.ID, "primary").text
    assert "N < 100" in browser.find_element(By.ID, "aggregates").text  # min-N warning shows
    links = browser.find_elements(By.CSS_SELECTOR, "#runs a")
    assert len(links) == 2
    browser.get(links[0].get_attribute("href"))
    assert browser.title.startswith("tiny-audioldm / prompt")


def test_side_by_side_page_loads_both_runs_audio(browser, served_tree):
    url = page_url(served_tree, served_tree["side_by_side"] / "index.html")
    open_and_check(browser, url, 6, 6)
    from selenium.webdriver.common.by import By

    prompts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#items .prompt")]
    assert SCRIPT_PROMPT in prompts


SCROLL_JS = """
return {scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
        body: document.body.scrollWidth};
"""

PLAY_JS = """
const done = arguments[arguments.length - 1];
const audio = document.querySelector('#grid-box table.grid:not([hidden]) tr.grid-row audio');
if (!audio) { done({error: 'no audio in the visible grid'}); return; }
audio.muted = true;
audio.play().then(() => {
  const t0 = performance.now();
  const poll = () => {
    if (audio.currentTime > 0 || performance.now() - t0 > 10000) {
      done({src: audio.getAttribute('src'), time: audio.currentTime, paused: audio.paused,
            preload: audio.getAttribute('preload'), error: audio.error && audio.error.code});
    } else { setTimeout(poll, 50); }
  };
  poll();
}).catch((e) => done({error: String(e)}));
"""


def test_comparison_page_fits_1366_plays_a_grid_cell_and_draws_the_scatter(browser, served_tree):
    from selenium.webdriver.common.by import By

    browser.set_window_size(1366, 768)
    width = browser.execute_script("return window.innerWidth")
    browser.get(page_url(served_tree, served_tree["report"] / "index.html"))
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], f"horizontal scroll at {width} px: {sizes}"
    # the key tables come first: conditions as rows, key metrics as columns
    key = browser.find_element(By.CSS_SELECTOR, "table.key")
    assert key.is_displayed() and "text sim" in key.text and "KAD" in key.text
    assert [r.text.split()[0] for r in key.find_elements(By.TAG_NAME, "tr")[1:]] == [
        "prompt",
        "retrieval",
    ]
    assert browser.find_elements(By.CSS_SELECTOR, "table.key td.best")
    assert browser.find_elements(By.CSS_SELECTOR, "#footnotes li")  # primary tests' Holm p
    # every player waits for a click (preload="none")
    audios = browser.find_elements(By.CSS_SELECTOR, "#grid-box audio")
    assert len(audios) == 7  # 4 prompts x 2 conditions, one retrieval item skipped
    assert {a.get_attribute("preload") for a in audios} == {"none"}
    played = browser.execute_async_script(PLAY_JS)
    assert played.get("error") is None and played["time"] > 0, played
    assert browser.find_element(By.CSS_SELECTOR, "#grid-box td.cell[title]")  # hover text
    # the trade-off scatter: one point per run, drawn with a size
    svg = browser.find_element(By.ID, "tradeoff")
    assert svg.size["width"] > 300 and svg.size["height"] > 200
    # (the fake prompt run was evaluated without a bank: no style similarity, named instead)
    assert len(svg.find_elements(By.CSS_SELECTOR, "circle.pt")) == 1
    assert "tiny-audioldm/prompt/seed0" in svg.find_element(By.CSS_SELECTOR, ".left-out").text
    # opening every details section still leaves no page-level horizontal scroll
    for summary in browser.find_elements(By.CSS_SELECTOR, "details > summary"):
        summary.click()
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], f"horizontal scroll with details open: {sizes}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_listening_test_taken_as_a_rater_reveals_no_condition_and_is_ingested(
    browser, served_tree, tmp_path
):
    """Build the test from the served runs, open it from file://, answer every trial,
    export the CSV, ingest it and show the preference rates on the comparison page."""
    import json
    import re

    import compare
    import listening_ingest
    import listening_test
    from selenium.webdriver.common.by import By

    runs = served_tree["runs"]
    page_dir, key = tmp_path / "test", tmp_path / "key.json"
    assert (
        listening_test.main(
            ["--runs", *map(str, runs), "--out-dir", str(page_dir), "--key", str(key)]
        )
        == 0
    )
    conditions = [json.loads((r / "run_config.json").read_text())["condition"] for r in runs]
    browser.set_window_size(1366, 768)
    browser.get((page_dir / "index.html").as_uri())
    source = browser.page_source.lower()
    names = [p.relative_to(page_dir).as_posix().lower() for p in page_dir.rglob("*")]
    for condition in [*conditions, "tiny-audioldm", "seed"]:
        assert condition not in source, f"page source reveals {condition!r}"
        assert not any(condition in n for n in names), f"a file name reveals {condition!r}"
    browser.find_element(By.ID, "rater").send_keys("rater-1")
    browser.find_element(By.ID, "start").click()
    trials = json.loads(key.read_text())["trials"]
    # the page's own trial list (clip A's file -> trial id), as the experimenter reads it
    listed = json.loads(
        re.search(r"const TRIALS = (\[.*?\]);", (page_dir / "index.html").read_text()).group(1)
    )
    trial_of = {t["a"]: t["id"] for t in listed}
    answered = 0
    while browser.find_element(By.ID, "trial").is_displayed():
        assert not any(c in browser.find_element(By.TAG_NAME, "body").text for c in conditions)
        src_a = browser.find_element(By.ID, "audio-a").get_attribute("src")
        state = browser.execute_async_script(AUDIO_STATE_JS)
        assert all(s["error"] is None and s["duration"] > 0 for s in state), state
        trial = trials[trial_of[src_a.split(page_dir.as_uri() + "/", 1)[1]]]
        # a careful listener: no difference on identical clips, the clean one over the
        # degraded one; otherwise prefers B on quality and A on text
        quality = {
            "identical": "same",
            "degraded": "B" if trial.get("degraded_side") == "A" else "A",
        }.get(trial["catch"], "B")
        browser.find_element(By.CSS_SELECTOR, f"input[name=quality][value={quality}]").click()
        browser.find_element(By.CSS_SELECTOR, "input[name=text][value=A]").click()
        if browser.find_element(By.ID, "style-q").is_displayed():
            browser.find_element(By.CSS_SELECTOR, "input[name=style][value=same]").click()
        browser.find_element(By.ID, "rate-a").send_keys("4")
        browser.find_element(By.ID, "next").click()
        answered += 1
    assert answered == len(trials)
    browser.find_element(By.ID, "export").click()
    text = browser.find_element(By.ID, "csv-out").get_attribute("value")
    lines = text.strip().splitlines()
    assert lines[0] == "rater_id,trial_id,question,choice,rating_a,rating_b,time_ms,answered_at"
    assert len(lines) - 1 >= 2 * len(trials)
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "rater-1.csv").write_text(text)
    prefs = tmp_path / "preferences.json"
    assert (
        listening_ingest.main(
            [
                "--answers-dir",
                str(answers),
                "--key",
                str(key),
                "--out",
                str(prefs),
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    result = json.loads(prefs.read_text())
    assert result["n_raters_kept"] == 1 and result["preferences"]
    out = tmp_path / "report"
    assert (
        compare.main(
            ["--runs", *map(str, runs), "--out-dir", str(out), "--n-boot", "20"]
            + ["--listening", str(prefs)]
        )
        == 0
    )
    browser.get(out.joinpath("index.html").as_uri())
    table = browser.find_element(By.ID, "listening-preferences")
    assert "quality" in table.text and "retrieval" in table.text and "prompt" in table.text
    assert "listening_quality_pref" in (out / "summary.csv").read_text()


@pytest.mark.slow
def test_demo_comparison_page_fits_1366_and_plays_a_grid_cell(browser, demo_workdir):
    """The demo's own comparison page (the session demo run): no horizontal scroll at
    1366x768, a grid cell plays, the scatter has one point per run with similarities."""
    import yaml
    from selenium.webdriver.common.by import By

    cfg = yaml.safe_load((demo_workdir / "config/demo.yaml").read_text())
    index = demo_workdir / cfg["paths"]["results"] / "report/index.html"
    browser.set_window_size(1366, 768)
    browser.get(index.as_uri())
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], sizes
    played = browser.execute_async_script(PLAY_JS)
    assert played.get("error") is None and played["time"] > 0, played
    from tests.workflow.helpers import run_points

    # one point per run: every configured model x condition and every sweep point
    n_runs = len(cfg["seeds"]) * len(run_points(cfg))
    points = browser.find_elements(By.CSS_SELECTOR, "#tradeoff circle.pt")
    assert 0 < len(points) <= n_runs
    for summary in browser.find_elements(By.CSS_SELECTOR, "details > summary"):
        summary.click()
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], sizes


SVG_STATE_JS = """
return Array.from(document.querySelectorAll('svg.sweep-curve, svg.sweep-tradeoff')).map((svg) => {
  const box = svg.getBoundingClientRect();
  const drawn = (sel) => Array.from(svg.querySelectorAll(sel)).filter((e) => {
    const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length;
  return {cls: svg.getAttribute('class'), metric: svg.getAttribute('data-metric'),
          width: box.width, height: box.height, points: drawn('circle.pt'),
          curves: drawn('polyline.curve'), bands: drawn('polygon.band'),
          baselines: drawn('.baseline-pt')};
});
"""


def test_sweep_curves_render_with_bands_baselines_and_the_tradeoff(browser, tmp_path):
    """The comparison page of a swept model: every curve and the trade-off plot draw."""
    from selenium.webdriver.common.by import By

    paths = fake_runs.build_swept_compare(tmp_path / "swept")
    handler = functools.partial(QuietHandler, directory=str(paths["root"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.set_window_size(1366, 768)
        browser.get_log("browser")
        base = f"http://127.0.0.1:{server.server_address[1]}"
        browser.get(f"{base}/results/report/index.html")
        assert "exploratory" in browser.find_element(By.ID, "sweeps").text.lower()
        svgs = browser.execute_script(SVG_STATE_JS)
        curves = [s for s in svgs if s["cls"] == "sweep-curve"]
        tradeoff = [s for s in svgs if s["cls"] == "sweep-tradeoff"]
        assert len(tradeoff) == 1 and len(curves) >= 2, svgs
        for svg in svgs:
            assert svg["width"] > 300 and svg["height"] > 200, svg
        by_metric = {s["metric"]: s for s in curves}
        for metric in ("clap_style_sim", "clap_text_sim"):
            drawn = by_metric[metric]
            # two values of guidance: two points, one connected line, one band, 2 baselines
            assert (drawn["points"], drawn["curves"], drawn["bands"]) == (2, 1, 1), drawn
        # the matched baselines (prompt, prompt@guidance=2) have a text similarity; their
        # style similarity is n/a here (fake runs evaluated without a bank): none drawn
        assert by_metric["clap_text_sim"]["baselines"] == 2, by_metric
        assert by_metric["clap_style_sim"]["baselines"] == 0, by_metric
        assert tradeoff[0]["points"] == 2 and tradeoff[0]["curves"] == 1, tradeoff
        best = browser.find_element(By.ID, "best")
        assert best.is_displayed() and "retrieval@" in best.text
        sizes = browser.execute_script(SCROLL_JS)
        assert sizes["scroll"] <= sizes["client"], f"horizontal scroll: {sizes}"
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        server.shutdown()
        server.server_close()


def test_adapter_ranking_and_paired_reference_sections_fit_1366(browser, tmp_path):
    """The comparison page with the held-out adapter tables, ranking effects and paired
    reference audio (tests/unit/evaluation/test_compare_results.py's fake results, long
    model paths and prompt-set names included): no page-level horizontal scroll."""
    from selenium.webdriver.common.by import By

    from tests.unit.evaluation import test_compare_results as results

    page = results.build_page(tmp_path / "results", long_names=True)
    browser.set_window_size(1366, 768)
    browser.get(page["out"].joinpath("index.html").as_uri())
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], f"horizontal scroll at 1366 px: {sizes}"
    table = browser.find_element(By.CSS_SELECTOR, "#adapter-1 table.adapter-heldout")
    assert table.is_displayed() and "labels text" in table.text and "untrained" in table.text
    assert (
        "paired reference audio: 3 of 4 prompts"
        in browser.find_element(By.ID, "paired-references").text
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking-effects tr.ranking-row")
    for summary in browser.find_elements(By.CSS_SELECTOR, "details > summary"):
        summary.click()
    sizes = browser.execute_script(SCROLL_JS)
    assert sizes["scroll"] <= sizes["client"], f"horizontal scroll with details open: {sizes}"
