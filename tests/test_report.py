"""The interactive report (sklearn_kerdensom.report), read as HTML: what it holds, not how a browser shows it
(tests/test_report_browser.py opens it in Chromium)."""

import base64
import copy
import html
import io
import json
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.cluster import KMeans
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask, u_matrix
from sklearn_kerdensom._topology import neighbour_pairs
from sklearn_kerdensom.datasets import load_demo
from sklearn_kerdensom.report import MapReport, map_report, report_sizes, write_report
from sklearn_kerdensom.report._content import member_distances, member_sample
from sklearn_kerdensom.report._images import binned_to, display_bytes, png_bytes

N_COLUMNS, N_ROWS = 4, 3
ROW_SPACING = {"rect": 1.0, "hex": np.sqrt(3.0) / 2.0}
RUN_DIRECTORY = "runs/my run"  # a space: the select command must quote it


@pytest.fixture(scope="module")
def images():
    return load_demo(300, random_state=0).images


def _fit(images, n_columns=N_COLUMNS, n_rows=N_ROWS, topology="rect", **kwargs):
    som = KerDenSOM(
        n_columns, n_rows, topology=topology, annealing_steps=2, max_iter=30, random_state=0, **kwargs
    )
    mask = circular_mask(images.shape[1:], images.shape[1] * 0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit
        return ClassAverager(make_pipeline(MaskVectorizer(mask), som)).fit(images)


@pytest.fixture(scope="module", params=["rect", "hex"])
def averager(request, images):
    return _fit(images, topology=request.param)


@pytest.fixture(scope="module")
def report(averager, images):
    return map_report(averager, images, run_directory=RUN_DIRECTORY)


def _tiles(page):
    """Every tile of the page's map: its attributes, and its centre and side in CSS pixels."""
    tiles = []
    for match in re.finditer(r'<button type="button" class="(tile[^"]*)" ([^>]*)>(.*?)</button>', page):
        classes, attributes, content = match.groups()
        values = dict(re.findall(r'([\w-]+)="([^"]*)"', attributes))
        style = dict(re.findall(r"(\w+):([\d.]+)px", values["style"]))
        side = float(style["width"])
        tiles.append(
            {
                "classes": classes.split(),
                "node": int(values["data-node"]),
                "class": int(values["data-class"]),
                "count": int(values["data-count"]),
                "label": re.search(r'<span class="number">([^<]*)</span>', content).group(1),
                "size": re.search(r'<span class="size">([^<]*)</span>', content).group(1),
                "centre": (float(style["left"]) + side / 2, float(style["top"]) + side / 2),
                "side": side,
                "image": re.search(r'<img alt="" src="([^"]*)"', content).group(1),
            }
        )
    return tiles


def _data(page):
    """The JSON the page's script reads."""
    return json.loads(
        re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page).group(1)
    )


def _decoded(uri):
    """The pixels of a PNG data URI."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


# ---------------------------------------------------------------------------------------------------------
# The map


def test_one_tile_per_class_numbered_as_the_star_files(averager, report):
    tiles = _tiles(report.html)
    assert len(tiles) == N_COLUMNS * N_ROWS
    # rlnClassNumber = node + 1 (io/_outputs.py), and map.png's #N.
    assert [tile["class"] for tile in tiles] == list(range(1, N_COLUMNS * N_ROWS + 1))
    assert [tile["label"] for tile in tiles] == [f"#{tile['node'] + 1}" for tile in tiles]
    assert [tile["count"] for tile in tiles] == averager.counts_.tolist()
    assert [tile["size"] for tile in tiles] == [f"n={count}" for count in averager.counts_]


def test_tiles_sit_on_the_maps_topology(averager, report):
    topology = averager.estimator_[-1].topology
    pitch = int(re.search(r'data-pitch="(\d+)"', report.html).group(1))
    tiles = _tiles(report.html)
    centres = np.array([tile["centre"] for tile in tiles]) / pitch
    # Node spacings from the map's top left corner: odd hexagonal rows shifted half a node right.
    expected = (averager.node_positions_ + 0.5) * [1.0, ROW_SPACING[topology]]
    np.testing.assert_allclose(centres, expected, atol=0.01)
    if topology == "hex":
        assert centres[N_COLUMNS, 0] - centres[0, 0] == pytest.approx(0.5, abs=0.01)
    # Tiles do not overlap: their side is less than a row spacing.
    assert max(tile["side"] for tile in tiles) < pitch * ROW_SPACING[topology]
    width, height = map(
        int, re.search(r'id="map"[^>]*style="width:(\d+)px;height:(\d+)px"', report.html).groups()
    )
    span = np.ptp(averager.node_positions_, axis=0) + 1
    assert (width, height) == (round(span[0] * pitch), round(N_ROWS * ROW_SPACING[topology] * pitch))


def test_tiles_show_the_averages_and_the_data_the_representatives(averager, report):
    tiles = _tiles(report.html)
    data = _data(report.html)
    expected = display_bytes(averager.averages_)
    for tile, average in zip(tiles, expected, strict=True):
        np.testing.assert_array_equal(_decoded(tile["image"]), average)
    representatives = display_bytes(averager.representatives_)
    for uri, representative in zip(data["representatives"], representatives, strict=True):
        np.testing.assert_array_equal(_decoded(uri), representative)
    assert data["image_size"] == list(averager.averages_.shape[1:])


def test_empty_classes_are_marked_and_show_no_members(averager, images):
    # Class #1 emptied: its members join class #2.
    emptied = copy.copy(averager)
    emptied.labels_ = np.where(averager.labels_ == 0, 1, averager.labels_)
    emptied.counts_ = np.bincount(emptied.labels_, minlength=len(averager.counts_))
    page = map_report(emptied, images).html
    tiles = _tiles(page)
    assert ["empty" in tile["classes"] for tile in tiles] == [count == 0 for count in emptied.counts_]
    assert "empty" in tiles[0]["classes"] and tiles[0]["size"] == "n=0"
    first = _data(page)["classes"][0]
    assert first["count"] == 0 and first["members"] == [[], []]
    assert "(0 empty)" not in page and "(1 empty)" in page


def test_the_hover_card_has_the_distances_to_the_neighbours(averager, report):
    som = averager.estimator_[-1]
    classes = _data(report.html)["classes"]
    # Their mean is the U-matrix.
    np.testing.assert_allclose([item["u"] for item in classes], u_matrix(som).ravel(), rtol=1e-6)
    first, second = neighbour_pairs(N_COLUMNS, N_ROWS, som.topology)
    for node, item in enumerate(classes):
        expected = sorted({*(second[first == node] + 1), *(first[second == node] + 1)})
        assert [number for number, _ in item["neighbours"]] == expected
        assert (item["row"], item["column"]) == divmod(node, N_COLUMNS)
    assert len(set(item["u_colour"] for item in classes)) > 1


# ---------------------------------------------------------------------------------------------------------
# Galleries of members


def test_member_sample_shows_the_nearest_and_the_farthest():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 2], [5, 30])
    rng.shuffle(labels)
    distances = rng.uniform(size=len(labels))
    sample = member_sample(distances, labels, 3, 12, 12)

    assert [len(part) for part in sample[0]] == [0, 0]
    whole, none = sample[1]
    assert len(none) == 0
    np.testing.assert_array_equal(whole, np.flatnonzero(labels == 1)[np.argsort(distances[labels == 1])])
    nearest, farthest = sample[2]
    ranked = np.flatnonzero(labels == 2)[np.argsort(distances[labels == 2])]
    np.testing.assert_array_equal(nearest, ranked[:12])
    np.testing.assert_array_equal(farthest, ranked[-12:])
    assert np.all(np.diff(distances[farthest]) > 0) and distances[nearest].max() < distances[farthest].min()


def test_member_distances_are_to_the_own_code_vector(averager, images, tmp_path):
    expected = averager.estimator_.transform(images)[np.arange(len(images)), averager.labels_]
    np.testing.assert_allclose(member_distances(averager, images), expected, rtol=1e-5)
    # Memory-mapped images are read chunk by chunk, to the same distances.
    mapped = np.lib.format.open_memmap(tmp_path / "images.npy", "w+", images.dtype, images.shape)
    mapped[:] = images
    np.testing.assert_allclose(member_distances(averager, mapped), expected, rtol=1e-5)


def test_a_gallery_holds_members_of_its_class_nearest_first(averager, images, report):
    classes = _data(report.html)["classes"]
    distances = member_distances(averager, images)
    for node, item in enumerate(classes):
        members = np.flatnonzero(averager.labels_ == node)
        nearest, farthest = item["members"]
        assert len(nearest) + len(farthest) == min(len(members), 24)
        shown = [distance for _, distance in nearest + farthest]
        assert shown == sorted(shown)
        np.testing.assert_allclose(
            shown[: len(nearest)], np.sort(distances[members])[: len(nearest)], rtol=1e-6
        )
        thumbnails = display_bytes(binned_to(images[members], 64), 0.5)
        for uri, _ in nearest[:2] + farthest[-2:]:
            assert any(np.array_equal(_decoded(uri), thumbnail) for thumbnail in thumbnails)


# ---------------------------------------------------------------------------------------------------------
# The page


def test_the_page_is_self_contained(report):
    page = report.html
    assert "http://" not in page and "https://" not in page
    references = re.findall(r'\b(?:src|href)="([^"]*)"', page)
    assert references and all(reference.startswith("data:") for reference in references)
    assert "<script src" not in page and 'rel="stylesheet"' not in page and "@import" not in page
    # The script's data cannot end its <script> element early.
    block = re.search(r'id="report-data">(.*?)</script>', page, re.DOTALL).group(1)
    assert "<" not in block


def test_the_selection_prefix_is_a_select_command_line(report):
    from sklearn_kerdensom.cli._arguments import _parser

    prefix = _data(report.html)["select_prefix"]
    argv = shlex.split(prefix + "3,4,10-12 --out subset.star")
    assert argv[0] == "kerdensom"
    arguments = _parser().parse_args(argv[1:])
    assert arguments.command == "select" and arguments.run == Path(RUN_DIRECTORY)
    assert arguments.classes == [3, 4, 10, 11, 12]


def test_the_run_section_shows_parameters_history_and_timings(averager, images):
    summary = {"command": ["demo", "--out", "x"], "timings": {"fit_s": 1.5}, "pixel_size": 2.4}
    page = map_report(averager, images, summary=summary).html
    run = page[page.index('<section id="run">') :]
    assert "kerdensom" in run and "demo --out x" in run
    assert "<th>fit_s</th><td>1.5</td>" in run and "<th>pixel_size</th><td>2.4</td>" in run
    assert f"<th>n_columns</th><td>{N_COLUMNS}</td>" in run
    n_steps = len(averager.estimator_[-1].annealing_history_)
    assert len(re.findall(r"<tr><td>\d+</td>", run)) == n_steps
    assert 'alt="annealing history" src="data:image/png;base64,' in run


def test_png_bytes_decode_to_the_same_pixels():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(17, 23), dtype=np.uint8)
    smooth = np.add.outer(np.arange(40), np.arange(30)).astype(np.uint8)
    for grey in (noise, smooth):
        data = png_bytes(grey)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), grey)


def test_display_bytes_and_binning():
    images = np.stack([np.arange(16.0).reshape(4, 4), np.zeros((4, 4))])
    grey = display_bytes(images)
    assert grey.dtype == np.uint8 and (grey[0].min(), grey[0].max()) == (0, 255)
    assert np.all(grey[1] == 128), "a constant (empty class) image is mid-grey"
    binned = binned_to(np.arange(2 * 130 * 130.0).reshape(2, 130, 130), 64)
    assert binned.shape == (2, 43, 43)  # a factor of 3, the smallest that fits 64
    assert binned[0, 0, 0] == np.mean(np.arange(130 * 130.0).reshape(130, 130)[:3, :3])


def test_a_10x10_map_of_128_px_images_stays_under_the_size_budget():
    # The worst case: pure noise (PNG cannot compress it), 24 members shown in every class. The map is fitted
    # on a few of the images (its averages are noise all the same), then every class is given 25 of them.
    rng = np.random.default_rng(0)
    images = rng.standard_normal((2500, 128, 128), dtype=np.float32)
    som = KerDenSOM(10, 10, annealing_steps=1, max_iter=1, random_state=0)
    mask = circular_mask((128, 128), 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        averager = ClassAverager(make_pipeline(MaskVectorizer(mask), som)).fit(images[:200])
    averager.labels_ = np.arange(len(images)) % 100
    averager.counts_ = np.bincount(averager.labels_)
    report = map_report(averager, images)
    classes = _data(report.html)["classes"]
    assert sum(len(part) for item in classes for part in item["members"]) == 2400
    assert report.nbytes < 20e6


def test_larger_maps_show_less_of_each_class():
    assert report_sizes(100) == {"n_nearest": 12, "n_farthest": 12, "image_size": 128, "member_size": 64}
    assert report_sizes(49) == report_sizes(100)
    # Four times the classes: a quarter of the members, images half as wide; as many bytes in all.
    assert report_sizes(400) == {"n_nearest": 3, "n_farthest": 3, "image_size": 64, "member_size": 32}
    assert report_sizes(10_000) == {"n_nearest": 1, "n_farthest": 1, "image_size": 16, "member_size": 16}
    given = report_sizes(400, n_nearest=0, member_size=48)
    assert (given["n_nearest"], given["n_farthest"], given["member_size"]) == (0, 3, 48)


# ---------------------------------------------------------------------------------------------------------
# Python API


def test_the_notebook_object_embeds_the_page_in_a_frame(averager, images, report):
    from sklearn_kerdensom.plotting import explore

    shown = report._repr_html_()
    assert shown.startswith("<iframe ") and 'sandbox="allow-scripts' in shown
    srcdoc = re.search(r'srcdoc="([^"]*)"', shown).group(1)
    assert html.unescape(srcdoc) == report.html
    explored = explore(averager, images, run_directory=RUN_DIRECTORY)
    assert isinstance(explored, MapReport) and explored.html == report.html
    # scikit-learn's own HTML representation of the estimator is left alone.
    assert "report-data" not in averager._repr_html_() and "sk-" in averager._repr_html_()


def test_write_report_keeps_a_users_file(averager, images, tmp_path):
    path = tmp_path / "report.html"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="nothing was written"):
        write_report(averager, images, path)
    assert path.read_text() == "mine"
    assert write_report(averager, images, path, overwrite=True) == path
    assert path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(FileExistsError):
        MapReport("x").save(path)


def test_the_report_refuses_what_it_cannot_show(averager, images):
    with pytest.raises(ValueError, match="images must be the 300 images"):
        map_report(averager, images[:10])
    with pytest.raises(ValueError, match="non-negative integer"):
        map_report(averager, images, n_nearest=-1)
    with pytest.raises(ValueError, match="positive integer"):
        map_report(averager, images, member_size=0)
    kmeans = ClassAverager(KMeans(3, n_init=1, random_state=0)).fit(images)
    with pytest.raises(ValueError, match="needs a map"):
        map_report(kmeans, images)


# ---------------------------------------------------------------------------------------------------------
# The command line


def test_demo_writes_the_report_as_one_of_its_outputs(tmp_path, monkeypatch):
    import starfile

    from sklearn_kerdensom.cli._main import main

    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / "demo"
    arguments = ["demo", "--out", str(out), "--n-particles", "120", "--columns", "3", "--rows", "2"]
    arguments += ["--steps", "2", "--max-iter", "30", "--quiet"]
    assert main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    # In the manifest: --overwrite may replace it, as any file the tool wrote.
    assert "report.html" in summary["files"] and summary["timings"]["report_s"] > 0
    page = (out / "report.html").read_text()
    classes = starfile.read(out / "classes.star")
    tiles = _tiles(page)
    assert [tile["class"] for tile in tiles] == classes["rlnClassNumber"].tolist()
    assert [tile["count"] for tile in tiles] == classes["kerdensomClassCount"].tolist()
    assert shlex.split(_data(page)["select_prefix"])[:3] == ["kerdensom", "select", str(out)]
    assert "demo" in page[page.index('<section id="run">') :]
    assert main([*arguments, "--overwrite"]) == 0


def test_a_map_of_one_class_has_a_report(images):
    # One node has no neighbours: the report shows it without neighbour distances (it failed on 0 pairs).
    single = _fit(images, n_columns=1, n_rows=1)
    page = map_report(single, images).html
    assert len(_tiles(page)) == 1
