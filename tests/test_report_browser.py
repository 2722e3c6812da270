"""The report in a real browser: headless Chromium, driven by Selenium, opens the ``report.html`` that
``kerdensom demo`` wrote, from disk, and the tests check what a person sees and does: the tiles and their
class numbers against ``classes.star``, a class's gallery, the selection and its ``kerdensom select``
command (run, to check the particles it writes), the views, and that the page renders without errors.

Skipped, with the reason, where Selenium, Chromium or its driver is missing (Debian: ``apt-get install
chromium chromium-driver``; ``.ci/run`` installs them). ``KERDENSOM_SCREENSHOTS=DIR`` keeps the
screenshots of the rendering test in ``DIR``.
"""

import os
import shlex
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium")
starfile = pytest.importorskip("starfile")

from PIL import Image  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from sklearn_kerdensom._topology import neighbour_pairs  # noqa: E402
from sklearn_kerdensom.cli._main import main  # noqa: E402

N_COLUMNS, N_ROWS, TOPOLOGY = 4, 3, "hex"
HEX_ROW_SPACING = np.sqrt(3.0) / 2.0
FAST = ["--steps", "2", "--max-iter", "30", "--quiet"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _demo(out, *arguments):
    """``kerdensom demo`` in this process (a subprocess pays seconds of imports); returns ``out``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPLBACKEND", "Agg")
        assert main(["demo", "--out", str(out), *arguments, *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def browser():
    binary = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no Chromium or chromedriver (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # --no-sandbox: Chromium's sandbox refuses to run as root, as CI containers do.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A demo run on a hexagonal map; a space in its name, which the select command must quote."""
    out = tmp_path_factory.mktemp("runs") / "demo run"
    return _demo(
        out,
        "--n-particles",
        "300",
        "--columns",
        str(N_COLUMNS),
        "--rows",
        str(N_ROWS),
        "--topology",
        TOPOLOGY,
    )


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    """A rectangular map with empty classes: Xmipp's objective piles few particles on the border."""
    out = tmp_path_factory.mktemp("runs") / "sparse"
    return _demo(out, "--n-particles", "60", "--columns", "5", "--rows", "4", "--objective", "xmipp")


def _open(browser, run):
    """Load a run's report from disk, after flushing the console log of what came before."""
    browser.get_log("browser")
    browser.get((run / "report.html").as_uri())
    return browser


@pytest.fixture
def page(browser, run):
    yield _open(browser, run)
    _assert_no_console_errors(browser)


def _assert_no_console_errors(browser):
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def _classes(run):
    return starfile.read(run / "classes.star")


def _tiles(browser):
    return browser.find_elements(By.CSS_SELECTOR, "#map .tile")


def _shift_click(browser, element):
    ActionChains(browser).key_down(Keys.SHIFT).click(element).key_up(Keys.SHIFT).perform()


def _tile_boxes(browser):
    """Left, top, width and height of every tile, relative to the map, in CSS pixels."""
    return np.array(
        browser.execute_script(
            """
            const map = document.getElementById("map").getBoundingClientRect();
            return Array.from(document.querySelectorAll("#map .tile"), (tile) => {
              const box = tile.getBoundingClientRect();
              return [box.left - map.left, box.top - map.top, box.width, box.height];
            });
            """
        )
    )


# ---------------------------------------------------------------------------------------------------------
# The map


def test_the_map_shows_every_class_with_its_number_and_size(page, run):
    classes = _classes(run)
    tiles = _tiles(page)
    assert len(tiles) == len(classes) == N_COLUMNS * N_ROWS
    assert [tile.find_element(By.CLASS_NAME, "number").text for tile in tiles] == [
        f"#{number}" for number in classes["rlnClassNumber"]
    ]
    assert [tile.find_element(By.CLASS_NAME, "size").text for tile in tiles] == [
        f"n={count}" for count in classes["kerdensomClassCount"]
    ]
    assert all(tile.is_displayed() for tile in tiles)
    decoded = page.execute_script(
        "return Array.from(document.querySelectorAll('#map .tile img'), (image) => image.naturalWidth);"
    )
    assert decoded == [32] * len(tiles), "every average decoded, at its 32 px"


def test_the_tiles_sit_on_the_hexagonal_map(page, run):
    classes = _classes(run)
    pitch = int(page.find_element(By.ID, "map").get_attribute("data-pitch"))
    boxes = _tile_boxes(page)
    centres = (boxes[:, :2] + boxes[:, 2:] / 2) / pitch
    # The map positions of classes.star, odd rows shifted half a node right, rows sqrt(3)/2 apart.
    expected = np.column_stack(
        [classes["kerdensomMapX"] + 0.5, (classes["kerdensomMapY"] + 0.5) * HEX_ROW_SPACING]
    )
    np.testing.assert_allclose(centres, expected, atol=0.02)
    assert boxes[N_COLUMNS, 0] - boxes[0, 0] == pytest.approx(pitch / 2, abs=1)
    # No tile overlaps another.
    assert boxes[:, 3].max() < pitch * HEX_ROW_SPACING


def test_empty_classes_are_marked_and_cannot_be_selected(browser, sparse_run):
    _open(browser, sparse_run)
    counts = _classes(sparse_run)["kerdensomClassCount"].to_numpy()
    assert (counts == 0).any() and (counts > 0).any()
    tiles = _tiles(browser)
    assert ["empty" in tile.get_attribute("class").split() for tile in tiles] == (counts == 0).tolist()
    marks = browser.execute_script(
        "return Array.from(document.querySelectorAll('#map .tile'),"
        " (tile) => getComputedStyle(tile, '::after').content);"
    )
    assert [mark == '"empty"' for mark in marks] == (counts == 0).tolist()
    empty = tiles[int(np.flatnonzero(counts == 0)[0])]
    _shift_click(browser, empty)
    assert browser.find_element(By.ID, "class-list").text == "none"
    empty.click()
    assert "No particles" in browser.find_element(By.CSS_SELECTOR, "#detail .member-count").text
    assert browser.find_elements(By.CSS_SELECTOR, "#detail .gallery img") == []
    _assert_no_console_errors(browser)


# ---------------------------------------------------------------------------------------------------------
# Hover and click


def test_hovering_a_class_shows_its_size_and_its_distances_to_its_neighbours(page, run):
    classes = _classes(run)
    tooltip = page.find_element(By.ID, "tooltip")
    assert not tooltip.is_displayed()
    node = N_COLUMNS + 1  # inside the map: six neighbours
    ActionChains(page).move_to_element(_tiles(page)[node]).perform()
    assert tooltip.is_displayed()
    text = tooltip.text
    assert f"Class #{node + 1}" in text
    assert f"{classes['kerdensomClassCount'][node]} particles" in text
    assert "mean distance to neighbours" in text
    first, second = neighbour_pairs(N_COLUMNS, N_ROWS, TOPOLOGY)
    expected = {*(second[first == node] + 1), *(first[second == node] + 1)}
    shown = text.split("neighbours: ")[-1].split(", ")
    assert {int(item.split()[0].lstrip("#")) for item in shown} == expected and len(expected) == 6
    ActionChains(page).move_to_element(page.find_element(By.TAG_NAME, "h1")).perform()
    assert not tooltip.is_displayed()


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_a_click_opens_the_gallery_of_the_class(page, run, which):
    classes = _classes(run)
    counts = classes["kerdensomClassCount"].to_numpy()
    node = int(np.argmax(counts) if which == "largest" else np.argmin(np.where(counts > 0, counts, 10**9)))
    count = int(counts[node])
    detail = page.find_element(By.ID, "detail")
    assert not detail.is_displayed()
    _tiles(page)[node].click()
    assert detail.is_displayed()
    assert detail.find_element(By.TAG_NAME, "h2").text == f"Class #{classes['rlnClassNumber'][node]}"
    assert detail.find_element(By.CLASS_NAME, "member-count").get_attribute("data-count") == str(count)
    assert f"{count} particles" in detail.text
    nearest = detail.find_elements(By.CSS_SELECTOR, ".gallery.nearest img")
    farthest = detail.find_elements(By.CSS_SELECTOR, ".gallery.farthest img")
    if count > 24:
        assert (len(nearest), len(farthest)) == (12, 12)
    else:
        assert (len(nearest), len(farthest)) == (count, 0)
    widths = page.execute_script(
        "return Array.from(document.querySelectorAll('#detail img'), (image) => image.naturalWidth);"
    )
    assert widths == [32] * (2 + min(count, 24)), "the average, the representative and the members, at 32 px"
    average = detail.find_element(By.CSS_SELECTOR, ".full img")
    assert average.get_attribute("src") == _tiles(page)[node].find_element(By.TAG_NAME, "img").get_attribute(
        "src"
    )
    ActionChains(page).send_keys(Keys.ESCAPE).perform()
    assert not detail.is_displayed()


# ---------------------------------------------------------------------------------------------------------
# Selection


def test_selected_classes_make_the_select_command_of_their_particles(page, run, tmp_path):
    classes = _classes(run)
    counts = dict(zip(classes["rlnClassNumber"], classes["kerdensomClassCount"], strict=True))
    occupied = [number for number, count in counts.items() if count > 0]
    picked = occupied[:3] + occupied[4:5]  # a run of three and one more: "a-c,e"
    tiles = _tiles(page)
    for number in picked:
        _shift_click(page, tiles[number - 1])
    listed = page.find_element(By.ID, "class-list").text
    assert _numbers(listed) == picked and "-" in listed
    assert page.find_element(By.ID, "selected-particles").text == str(sum(counts[n] for n in picked))
    assert ["selected" in tile.get_attribute("class") for tile in tiles] == [
        number in picked for number in classes["rlnClassNumber"]
    ]
    subset = tmp_path / "picked subset.star"
    out = page.find_element(By.ID, "subset-out")
    out.clear()
    out.send_keys(str(subset))
    command = page.find_element(By.ID, "select-command").text
    argv = shlex.split(command)
    assert argv[:3] == ["kerdensom", "select", str(run)]
    # The command, run, writes the particles of the picked classes.
    assert main(argv[1:]) == 0
    particles = starfile.read(subset, always_dict=True)["particles"]
    assert sorted(set(particles["rlnClassNumber"])) == picked
    assert len(particles) == sum(counts[number] for number in picked)
    download = page.find_element(By.ID, "download-classes").get_attribute("href")
    assert download.startswith("data:text/plain")
    assert unquote(download.split(",", 1)[1]).split() == [str(number) for number in picked]
    # A second shift-click takes a class out; "click selects" makes a plain click select.
    _shift_click(page, tiles[picked[1] - 1])
    assert _numbers(page.find_element(By.ID, "class-list").text) == [picked[0], *picked[2:]]
    page.find_element(By.ID, "select-mode").click()
    tiles[picked[1] - 1].click()
    assert _numbers(page.find_element(By.ID, "class-list").text) == picked
    assert not page.find_element(By.ID, "detail").is_displayed()
    page.find_element(By.ID, "clear-selection").click()
    assert page.find_element(By.ID, "class-list").text == "none"


def _numbers(listed):
    """Class numbers of ``3,4,10-12``, as ``kerdensom select --classes`` reads them."""
    from sklearn_kerdensom.cli._arguments import _class_numbers

    return _class_numbers(listed)


def test_the_gallery_button_selects_its_class(page, run):
    node = int(np.argmax(_classes(run)["kerdensomClassCount"]))
    _tiles(page)[node].click()
    button = page.find_element(By.ID, "toggle-selection")
    assert button.text == f"Select class #{node + 1}"
    button.click()
    assert page.find_element(By.ID, "class-list").text == str(node + 1)
    assert button.text == f"Remove class #{node + 1}"


# ---------------------------------------------------------------------------------------------------------
# Views and rendering


def test_the_map_switches_to_representatives_and_the_u_matrix(page):
    data = page.execute_script("return JSON.parse(document.getElementById('report-data').textContent);")

    def sources():
        return [tile.find_element(By.TAG_NAME, "img").get_attribute("src") for tile in _tiles(page)]

    averages = sources()
    page.find_element(By.XPATH, "//label[contains(., 'Representatives')]").click()
    assert sources() == data["representatives"] != averages
    page.find_element(By.XPATH, "//label[contains(., 'U-matrix')]").click()
    assert page.find_element(By.ID, "u-legend").is_displayed()
    hidden = page.execute_script(
        "return Array.from(document.querySelectorAll('#map .tile img'),"
        " (image) => getComputedStyle(image).visibility);"
    )
    assert set(hidden) == {"hidden"}
    colours = [tile.value_of_css_property("background-color") for tile in _tiles(page)]
    assert colours == [_rgba(item["u_colour"]) for item in data["classes"]]
    page.find_element(By.XPATH, "//label[contains(., 'Averages')]").click()
    assert sources() == averages
    assert not page.find_element(By.ID, "u-legend").is_displayed()


def _rgba(colour):
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, 1)"


def test_the_page_renders(page, run, tmp_path):
    classes = _classes(run)
    map_element = page.find_element(By.ID, "map")
    pitch = int(map_element.get_attribute("data-pitch"))
    size = map_element.size
    span = classes["kerdensomMapX"].max() - classes["kerdensomMapX"].min() + 1
    assert size["width"] == pytest.approx(span * pitch, abs=1)
    assert size["height"] == pytest.approx(N_ROWS * HEX_ROW_SPACING * pitch, abs=1)
    _tiles(page)[int(np.argmax(classes["kerdensomClassCount"]))].click()
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot))
    picture = np.asarray(Image.open(shot).convert("RGB"))
    ratio = page.execute_script("return window.devicePixelRatio;")
    # Not blank: a page of text and particle images has many colours; a blank or broken one a few.
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 200
    left, top = (round(map_element.location[key] * ratio) for key in ("x", "y"))
    width, height = round(size["width"] * ratio), round(size["height"] * ratio)
    drawn = picture[top : top + height, left : left + width].mean(axis=2)
    assert drawn.shape == (height, width) and drawn.std() > 20, "the map is drawn"
    directory = os.environ.get("KERDENSOM_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(directory) / "report_demo.png")


def test_the_report_opens_in_a_notebook_frame(browser, run, tmp_path):
    # What Jupyter shows of a MapReport: the page in an iframe's srcdoc, its script running there.
    from sklearn_kerdensom.report import MapReport

    notebook = tmp_path / "notebook.html"
    frame = MapReport((run / "report.html").read_text())._repr_html_()
    notebook.write_text(f"<!DOCTYPE html><html><body><h1>notebook</h1>{frame}</body></html>")
    browser.get_log("browser")
    browser.get(notebook.as_uri())
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    try:
        tiles = _tiles(browser)
        assert len(tiles) == N_COLUMNS * N_ROWS
        _shift_click(browser, tiles[0])
        assert browser.find_element(By.ID, "class-list").text == "1"
    finally:
        browser.switch_to.default_content()
    _assert_no_console_errors(browser)
