"""The interactive report (``report.html``): its size, the time to write it, and how fast a browser shows it.

Three reports:

* ``demo``: the one ``kerdensom demo`` writes (1000 simulated AdK path particles of 32 x 32 px, 7 x 7 map),
  the command run in this process;
* ``10x10``: the budget case, a 10 x 10 map of 128 x 128 px class averages with up to 24 members shown
  per class (12 nearest and 12 farthest): 6000 AdK path particles simulated at 128 px (the 64 px
  projections upsampled before the CTF and the noise, so that the noise is white at 128 px, as a
  camera's is), SNR 0.1, one short fit (:func:`sklearn_kerdensom.report.write_report` writes it);
* ``10x10 noise``: its worst case, which PNG cannot compress: 2500 images of white noise, 25 in every
  class of a 10 x 10 map, so that every class shows 24 members.

For each: the file's size (budget 20 MB), the seconds to write it, and, loaded from disk in headless
Chromium (``file://``; median of ``--loads`` fresh loads), the first paint and first contentful paint
(Paint Timing; budget 2 s), the largest contentful paint, ``DOMContentLoaded`` and ``load`` (Navigation
Timing), and the moment the report's script has wired the page (its ``report-ready`` mark), all in ms
from the start of navigation. Also saves a screenshot of the demo's report, a class opened and three
selected, as ``results/report_demo.png`` and ``../docs/report_demo.png`` (for the README).

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and ``selenium``;
without them only the sizes are measured.

    python benchmarks/bench_report.py             # ~2 min
    python benchmarks/bench_report.py --quick     # 300 demo particles, 1500 for the 10 x 10 map
"""

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

BUDGET_MB = 20.0
BUDGET_FIRST_PAINT_MS = 2000.0
DOCS = _common.HERE.parent / "docs"

# Paint entries are recorded after the load event, and the largest contentful paint moves on as images
# decode: both are read a second after the page has loaded.
_TIMINGS_SCRIPT = """
const done = arguments[arguments.length - 1];
let largest = null;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) { largest = entry.startTime; }
}).observe({ type: "largest-contentful-paint", buffered: true });
setTimeout(() => {
  const navigation = performance.getEntriesByType("navigation")[0];
  const paints = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
  const ready = performance.getEntriesByName("report-ready")[0];
  done({
    first_paint: paints["first-paint"],
    first_contentful_paint: paints["first-contentful-paint"],
    largest_contentful_paint: largest,
    dom_content_loaded: navigation.domContentLoadedEventEnd,
    load: navigation.loadEventEnd,
    report_ready: ready ? ready.startTime : null,
  });
}, 1000);
"""


def _browser():
    """Headless Chromium through Selenium, or None (with the reason printed) where there is none."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        print("no selenium: load times not measured (pip install selenium)")
        return None
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        print(
            "no chromium or chromedriver: load times not measured (apt-get install chromium chromium-driver)"
        )
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    arguments = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000")
    for argument in (*arguments, "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def _load_times(browser, path, n_loads):
    """Median over ``n_loads`` fresh loads of each timing of :data:`_TIMINGS_SCRIPT`, in ms."""
    loads = []
    for _ in range(n_loads):
        browser.get("about:blank")
        browser.get(path.resolve().as_uri())
        loads.append(browser.execute_async_script(_TIMINGS_SCRIPT))
    return {name: statistics.median(load[name] for load in loads) for name in loads[0]}


def _screenshot(browser, path):
    """The demo's report with its largest class opened and three classes selected, saved small."""
    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(1400, 1300)
    browser.get(path.resolve().as_uri())
    tiles = browser.find_elements(By.CSS_SELECTOR, "#map .tile")
    counts = [int(tile.get_attribute("data-count")) for tile in tiles]
    tiles[int(np.argmax(counts))].click()
    for tile in tiles[1:4]:
        ActionChains(browser).key_down(Keys.SHIFT).click(tile).key_up(Keys.SHIFT).perform()
    ActionChains(browser).move_to_element(tiles[len(tiles) // 2]).perform()
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "screenshot.png"
        browser.save_screenshot(str(raw))
        # Four fifths of the size, in 128 colours: readable, and small enough to commit (~200 KiB). The
        # octree keeps the few orange and blue pixels of the selection, which median cut merges into greys.
        picture = Image.open(raw).convert("RGB")
        size = (picture.width * 4 // 5, picture.height * 4 // 5)
        small = picture.resize(size, Image.Resampling.LANCZOS).quantize(128, method=Image.Quantize.FASTOCTREE)
        for target in (_common.RESULTS / "report_demo.png", DOCS / "report_demo.png"):
            target.parent.mkdir(parents=True, exist_ok=True)
            small.save(target, optimize=True)
            print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")


def _demo_report(directory, n_particles):
    """Run ``kerdensom demo`` in this process; returns its report and the seconds it took to write."""
    import json

    from sklearn_kerdensom.cli._main import main

    # Run from its directory, as the README's "kerdensom demo --out demo": the report's select command
    # names the run as the user typed it.
    with contextlib.chdir(directory):
        code = main(["demo", "--out", "demo", "--n-particles", str(n_particles), "--quiet"])
    out = directory / "demo"
    if code != 0:
        raise RuntimeError(f"kerdensom demo failed with exit code {code}")
    timings = json.loads((out / "summary.json").read_text())["timings"]
    return out / "report.html", timings["report_s"], "7 x 7 map, 32 px, kerdensom demo defaults"


def _particles_128(n_particles):
    """AdK path particles of 128 x 128 px at 0.6 Å (SNR 0.1, phase-flipped), and their mask."""
    from scipy import ndimage

    from sklearn_kerdensom import circular_mask
    from sklearn_kerdensom.datasets import _interpolated, _path_projections, simulate_particles

    clean, knots, pixel_size = _path_projections(1)
    upsampled = ndimage.zoom(clean, (1, 2, 2), order=3)
    coordinate = np.random.default_rng(0).uniform(size=n_particles)
    images, _ = simulate_particles(
        _interpolated(upsampled, knots, coordinate), pixel_size=pixel_size / 2, snr=0.1, random_state=0
    )
    return images, circular_mask((128, 128), 50)


def _fitted_10x10(images, mask):
    """A short fit of a 10 x 10 map (the report, not the fit, is measured)."""
    import warnings

    from sklearn.pipeline import make_pipeline

    from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer

    som = KerDenSOM(10, 10, annealing_steps=2, max_iter=20, subspace_components=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # steps stop at max_iter
        return ClassAverager(make_pipeline(MaskVectorizer(mask), som)).fit(images)


def _written(directory, name, averager, images, description):
    from sklearn_kerdensom.report import write_report

    path = directory / f"report_{name.replace(' ', '_')}.html"
    seconds, _ = _common.timed(write_report, averager, images, path)
    shown = np.minimum(averager.counts_, 24).sum()
    return path, seconds, f"{description}, {shown} members shown"


def _map_report(directory, n_particles):
    """A 10 x 10 map of 128 px particles and its report; returns the report and the seconds to write it."""
    images, mask = _particles_128(n_particles)
    averager = _fitted_10x10(images, mask)
    return _written(directory, "10x10", averager, images, f"10 x 10 map, 128 px, {n_particles} particles")


def _noise_report(directory, n_particles):
    """The worst case of a 10 x 10 map of 128 px images: white noise, every class 25 images."""
    from sklearn_kerdensom import circular_mask

    images = np.random.default_rng(0).standard_normal((n_particles, 128, 128), dtype=np.float32)
    # Fitted on a few (its averages are noise all the same), then every class given its share.
    averager = _fitted_10x10(images[:500], circular_mask((128, 128), 50))
    averager.labels_ = np.arange(n_particles) % 100
    averager.counts_ = np.bincount(averager.labels_)
    return _written(directory, "10x10 noise", averager, images, "10 x 10 map, 128 px of white noise")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--loads", type=int, default=5, help="page loads per report (median)")
    args = parser.parse_args()
    info = _common.machine_info()
    _common.print_header("bench_report: size and load time of report.html", info)
    cases = {"demo": 300 if args.quick else 1000, "10x10": 1500 if args.quick else 6000, "10x10 noise": 2500}
    makers = {"demo": _demo_report, "10x10": _map_report, "10x10 noise": _noise_report}
    browser = _browser()
    results, rows = {}, []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch)
            for name, n_particles in cases.items():
                start = time.perf_counter()
                path, write_s, description = makers[name](directory, n_particles)
                print(f"{name}: {description} ({time.perf_counter() - start:.1f} s with the fit)")
                size_mb = path.stat().st_size / 1e6
                result = {"description": description, "size_mb": size_mb, "write_s": write_s}
                if browser is not None:
                    result["load_ms"] = _load_times(browser, path, args.loads)
                    if name == "demo" and not args.quick:
                        _screenshot(browser, path)
                results[name] = result
                load = result.get("load_ms", {})
                rows.append(
                    [
                        name,
                        size_mb,
                        write_s,
                        *(
                            load.get(key, float("nan"))
                            for key in ("first_contentful_paint", "largest_contentful_paint")
                        ),
                        *(
                            load.get(key, float("nan"))
                            for key in ("dom_content_loaded", "load", "report_ready")
                        ),
                    ]
                )
    finally:
        if browser is not None:
            browser.quit()
    _common.table(
        ["report", "MB", "write s", "FCP ms", "LCP ms", "DOMContentLoaded ms", "load ms", "ready ms"],
        rows,
        {1: ".2f", 2: ".2f", 3: ".0f", 4: ".0f", 5: ".0f", 6: ".0f", 7: ".0f"},
    )
    print(f"budget: < {BUDGET_MB:g} MB and first paint < {BUDGET_FIRST_PAINT_MS:g} ms for the 10 x 10 maps")
    budget = {"size_mb": BUDGET_MB, "first_contentful_paint_ms": BUDGET_FIRST_PAINT_MS}
    _common.write_json(
        "bench_report_quick" if args.quick else "bench_report",
        {"machine": info, "budget": budget, "loads": args.loads, "results": results},
    )


if __name__ == "__main__":
    main()
