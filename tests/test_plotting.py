"""Plots of a fitted map: what is drawn, and where."""

import copy
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from sklearn_kerdensom import (  # noqa: E402
    ClassAverager,
    KerDenSOM,
    MaskVectorizer,
    circular_mask,
    u_matrix,
)
from sklearn_kerdensom.plotting import (  # noqa: E402
    explore,
    plot_annealing_history,
    plot_class_map,
    plot_map,
    plot_node_values,
    plot_u_matrix,
)

N_COLUMNS, N_ROWS = 4, 3
N_NODES = N_COLUMNS * N_ROWS
ROW_SPACING = {"rect": 1.0, "hex": np.sqrt(3.0) / 2.0}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(120, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module", params=["rect", "hex"])
def averager(request, images):
    som = KerDenSOM(N_COLUMNS, N_ROWS, topology=request.param, random_state=0)
    return ClassAverager(make_pipeline(MaskVectorizer(circular_mask((8, 8), 3)), som)).fit(images)


def _topology(averager):
    return averager.estimator_[-1].topology


def _image_centres(ax):
    """Centre (x, y) of every image drawn on ``ax``, in drawing coordinates."""
    extents = np.array([image.get_extent() for image in ax.images])
    return np.column_stack([extents[:, :2].mean(axis=1), extents[:, 2:].mean(axis=1)])


def _count_labels(ax):
    return [text.get_text() for text in ax.texts if text.get_text().startswith("n=")]


# ---------------------------------------------------------------------------------------------------------
# plot_map


def test_plot_map_draws_every_node_at_its_grid_position(averager):
    topology = _topology(averager)
    fig, ax = plot_map(averager.averages_, averager.node_positions_, topology=topology)

    assert ax.figure is fig
    assert len(ax.images) == N_NODES
    expected = averager.node_positions_ * [1.0, ROW_SPACING[topology]]
    np.testing.assert_allclose(_image_centres(ax), expected)
    bottom, top = ax.get_ylim()
    assert bottom > top, "row 0 must be at the top"
    assert not any(spine.get_visible() for spine in ax.spines.values())
    assert ax.get_aspect() == 1.0


def test_plot_map_shifts_odd_hex_rows_by_half_a_cell(images):
    som = KerDenSOM(N_COLUMNS, N_ROWS, topology="hex", random_state=0)
    averager = ClassAverager(make_pipeline(MaskVectorizer(circular_mask((8, 8), 3)), som)).fit(images)
    _, ax = plot_map(averager.averages_, averager.node_positions_, topology="hex")

    left_edges = np.array([image.get_extent()[0] for image in ax.images]).reshape(N_ROWS, N_COLUMNS)
    np.testing.assert_allclose(left_edges[1] - left_edges[0], 0.5)
    np.testing.assert_allclose(left_edges[2], left_edges[0])
    # Equal-sized square images, one row spacing high, so rows do not overlap.
    heights = [abs(image.get_extent()[2] - image.get_extent()[3]) for image in ax.images]
    assert max(heights) <= ROW_SPACING["hex"]


def test_plot_map_labels_class_sizes_and_greys_empty_classes():
    positions = np.column_stack([np.arange(3.0), np.zeros(3)])
    images = np.stack([np.eye(4), np.zeros((4, 4)), 2.0 * np.eye(4)])
    _, ax = plot_map(images, positions, counts=[5, 0, 12])

    assert _count_labels(ax) == ["n=5", "n=0", "n=12"]
    assert [image.get_alpha() for image in ax.images] == [None, 0.3, None]
    # The empty class's constant (zero) image is shown mid-grey, not as NaN.
    np.testing.assert_array_equal(ax.images[1].get_array(), 0.5)


def test_plot_map_without_counts_has_no_labels(averager):
    _, ax = plot_map(averager.averages_, averager.node_positions_, topology=_topology(averager))
    assert _count_labels(ax) == []


def test_plot_map_normalizes_each_image_or_all_together():
    positions = np.column_stack([np.arange(2.0), np.zeros(2)])
    images = np.stack([np.arange(16.0).reshape(4, 4), 0.5 * np.arange(16.0).reshape(4, 4)])

    _, ax = plot_map(images, positions, normalize="each")
    for image in ax.images:
        assert (image.get_array().min(), image.get_array().max()) == (0.0, 1.0)

    _, ax = plot_map(images, positions, normalize="global")
    np.testing.assert_allclose([image.get_array().max() for image in ax.images], [1.0, 0.5])


def test_plot_map_draws_into_a_given_axes_or_figure(averager):
    fig, given = plt.subplots()
    returned_fig, ax = plot_map(
        averager.averages_, averager.node_positions_, topology=_topology(averager), ax=given, title="map"
    )
    assert (returned_fig, ax) == (fig, given)
    assert ax.get_title() == "map"

    other = plt.figure()
    returned_fig, ax = plot_map(
        averager.averages_, averager.node_positions_, topology=_topology(averager), fig=other
    )
    assert returned_fig is other and ax in other.axes


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": np.zeros((3, 4, 4))}, "images must have shape"),
        ({"images": np.zeros((2, 16))}, "images must have shape"),
        ({"counts": [1, 2, 3]}, "counts must have shape"),
        ({"normalize": "none"}, "normalize must be one of"),
        ({"topology": "square"}, "topology must be one of"),
        ({"node_positions": np.zeros(2)}, "node_positions must have shape"),
        # matplotlib's own errors before (API trial):
        ({"node_positions": [[0.0, 0.0], [np.nan, 0.0]]}, "node_positions must be finite"),
        ({"counts": [1.0, np.nan]}, "counts must be numbers of particles"),
        ({"images": np.zeros((0, 4, 4)), "node_positions": np.zeros((0, 2))}, "n_nodes >= 1"),
    ],
)
def test_plot_map_rejects_inconsistent_input(kwargs, message):
    arguments = {"images": np.zeros((2, 4, 4)), "node_positions": [[0.0, 0.0], [1.0, 0.0]], **kwargs}
    with pytest.raises(ValueError, match=message):
        plot_map(arguments.pop("images"), arguments.pop("node_positions"), **arguments)


# ---------------------------------------------------------------------------------------------------------
# plot_class_map


@pytest.mark.parametrize(
    ("kind", "titles"),
    [
        ("averages", ["Class averages"]),
        ("representatives", ["Representatives"]),
        ("both", ["Class averages", "Representatives"]),
    ],
)
def test_plot_class_map_draws_the_requested_panels(averager, kind, titles):
    fig, axes = plot_class_map(averager, kind=kind)

    assert [ax.get_title() for ax in axes] == titles
    assert all(ax.figure is fig for ax in axes)
    expected = averager.node_positions_ * [1.0, ROW_SPACING[_topology(averager)]]
    for ax in axes:
        assert len(ax.images) == N_NODES
        np.testing.assert_allclose(_image_centres(ax), expected)
        assert _count_labels(ax) == [f"n={count}" for count in averager.counts_]


def test_plot_class_map_forwards_options(averager):
    fig, axes = plot_class_map(averager, kind="both", title="my map", cmap="magma")
    assert fig.get_suptitle() == "my map"
    assert all(image.get_cmap().name == "magma" for ax in axes for image in ax.images)

    _, (ax,) = plot_class_map(averager, title="only averages")
    assert ax.get_title() == "only averages"


def test_plot_class_map_takes_the_topology_of_a_bare_kerdensom(images):
    averager = ClassAverager(KerDenSOM(3, 2, topology="hex", random_state=0)).fit(images)
    _, (ax,) = plot_class_map(averager)
    np.testing.assert_allclose(_image_centres(ax)[:, 1], averager.node_positions_[:, 1] * ROW_SPACING["hex"])


def test_plot_class_map_rejects_what_it_cannot_draw(averager, images):
    with pytest.raises(ValueError, match="kind must be one of"):
        plot_class_map(averager, kind="codes")
    without_representatives = copy.copy(averager)
    without_representatives.representatives_ = None
    with pytest.raises(ValueError, match="no representatives_"):
        plot_class_map(without_representatives, kind="both")
    kmeans = ClassAverager(KMeans(3, n_init=1, random_state=0)).fit(images)
    with pytest.raises(ValueError, match="node_positions_"):
        plot_class_map(kmeans)


# ---------------------------------------------------------------------------------------------------------
# plot_u_matrix


def test_plot_u_matrix_draws_one_cell_per_node_with_a_colorbar(averager):
    som = averager.estimator_[-1]
    topology = som.topology
    fig, ax = plot_u_matrix(som)

    (cells,) = ax.collections
    paths = cells.get_paths()
    assert len(paths) == N_NODES
    np.testing.assert_allclose(cells.get_array(), u_matrix(som).ravel())
    assert cells.colorbar is not None
    assert cells.colorbar.ax in fig.axes
    n_corners = {"rect": 4, "hex": 6}[topology]
    corners = [np.unique(path.vertices, axis=0) for path in paths]
    assert all(len(c) == n_corners for c in corners)
    expected = som.node_positions_ * [1.0, ROW_SPACING[topology]]
    np.testing.assert_allclose([c.mean(axis=0) for c in corners], expected, atol=1e-12)


def test_plot_u_matrix_accepts_a_pipeline_or_averager_and_a_given_axes(averager):
    _, given = plt.subplots()
    fig, ax = plot_u_matrix(averager, ax=given, cmap="magma")
    assert ax is given and fig is given.figure
    assert ax.collections[0].get_cmap().name == "magma"
    _, ax = plot_u_matrix(averager.estimator_)
    np.testing.assert_allclose(ax.collections[0].get_array(), u_matrix(averager.estimator_[-1]).ravel())


# ---------------------------------------------------------------------------------------------------------
# plot_annealing_history


def test_plot_annealing_history_has_a_point_per_step_and_iteration(averager):
    history = averager.estimator_[-1].annealing_history_
    n_steps = len(history)
    fig, axes = plot_annealing_history(averager)

    assert axes.shape == (4,) and all(ax.figure is fig for ax in axes)
    regularization, sigma, iterations, objective = axes
    np.testing.assert_allclose(regularization.lines[0].get_ydata(), [s["regularization"] for s in history])
    assert regularization.get_yscale() == "log"
    np.testing.assert_allclose(sigma.lines[0].get_ydata(), [s["sigma"] for s in history])
    assert [bar.get_height() for bar in iterations.patches] == [s["n_iter"] for s in history]
    trace, *boundaries = objective.lines
    expected = np.concatenate([s["objective_per_iteration"] for s in history])
    np.testing.assert_allclose(trace.get_ydata(), expected)
    assert len(boundaries) == n_steps - 1


def test_plot_annealing_history_without_regularization_uses_a_linear_scale():
    X = np.random.default_rng(0).normal(size=(60, 5))
    som = KerDenSOM(3, 2, reg_initial=0.0, reg_final=0.0, annealing_steps=1, random_state=0).fit(X)
    _, given = plt.subplots(2, 2)
    fig, axes = plot_annealing_history(som, axes=given)
    assert fig is given[0, 0].figure
    assert list(axes) == list(given.ravel())
    assert axes[0].get_yscale() == "linear"
    assert len(axes[3].lines) == 1, "one step: no step boundaries"
    with pytest.raises(ValueError, match="4 Axes"):
        plot_annealing_history(som, axes=given[0])


# ---------------------------------------------------------------------------------------------------------
# Output and packaging


def test_a_class_map_saves_to_png(averager, tmp_path):
    fig, _ = plot_class_map(averager)
    path = tmp_path / "map.png"
    fig.savefig(path, dpi=50)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_the_package_does_not_import_matplotlib():
    code = "import sys, sklearn_kerdensom; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_cell_carries_its_class_number():
    # On 895f8d5 the tiles carried only n=count: picking classes meant computing row * 7 + col + 1.
    from sklearn_kerdensom.plotting import plot_map

    positions = np.column_stack([np.tile(np.arange(3), 2), np.repeat(np.arange(2), 3)]).astype(float)
    _fig, ax = plot_map(np.random.default_rng(0).random((6, 4, 4)), positions, counts=[1, 0, 2, 3, 4, 5])
    numbers = [text for text in ax.texts if text.get_text().startswith("#")]
    assert [text.get_text() for text in numbers] == [f"#{c}" for c in range(1, 7)]
    # Each number sits at the top left of its own cell (row 0 at the top).
    for text, (x, y) in zip(numbers, positions, strict=True):
        assert text.get_position()[0] < x and text.get_position()[1] < y


def _tick_labels(axis):
    """(position, text) of every tick of an axis."""
    ticks = zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=True)
    return [(float(position), label.get_text()) for position, label in ticks]


@pytest.mark.parametrize("draw", ["class_map", "u_matrix"])
def test_maps_number_their_columns_and_rows(averager, draw):
    # As the report's axes and class numbers: column indices along the top, row indices down the left.
    topology = _topology(averager)
    if draw == "class_map":
        _, (ax,) = plot_class_map(averager)
    else:
        _, ax = plot_u_matrix(averager)
    columns = _tick_labels(ax.xaxis)
    assert columns == [(float(column), str(column)) for column in range(N_COLUMNS)]
    rows = _tick_labels(ax.yaxis)
    assert [label for _, label in rows] == [str(row) for row in range(N_ROWS)]
    np.testing.assert_allclose([tick for tick, _ in rows], np.arange(N_ROWS) * ROW_SPACING[topology])
    assert ax.xaxis.get_ticks_position() == "top"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("column", "row")


def test_the_u_matrix_carries_the_class_numbers(averager):
    _, ax = plot_u_matrix(averager)
    numbers = [text for text in ax.texts if text.get_text().startswith("#")]
    assert [text.get_text() for text in numbers] == [f"#{node + 1}" for node in range(N_NODES)]
    expected = averager.node_positions_ * [1.0, ROW_SPACING[_topology(averager)]]
    np.testing.assert_allclose([text.get_position() for text in numbers], expected)
    positions = np.column_stack([np.arange(3.0), np.zeros(3)])
    _, ax = plot_node_values([1.0, 2.0, 3.0], positions, class_numbers=False)
    assert len(ax.texts) == 0
    # One value per node: a shorter or 2-D array drew a plot of the wrong nodes (API trial).
    for values in ([1.0, 2.0], [[1.0, 2.0, 3.0]]):
        with pytest.raises(ValueError, match=r"values must have shape \(n_nodes,\)"):
            plot_node_values(values, positions)


def test_explore_returns_the_interactive_report(averager, images):
    from sklearn_kerdensom.report import MapReport

    report = explore(averager, images, n_nearest=2, n_farthest=2)
    assert isinstance(report, MapReport)
    assert report.html.count('class="tile') == N_NODES
    assert report._repr_html_().startswith("<iframe ")


def test_large_images_in_small_tiles_do_not_alias():
    # A 256 px image of a checkerboard at Nyquist, drawn into a tile of ~70 px: shrunk without filtering
    # (interpolation "nearest", as on d40ab9d) it shows a pattern of black and white (std 64 of 255);
    # filtered, the flat grey it averages to.
    rows, columns = np.indices((256, 256))
    image = 0.5 * (np.hypot(rows - 128, columns - 128) < 60) + 0.5 * ((rows + columns) % 2)
    fig, ax = plot_map(np.stack([image] * 4), np.array([[0, 0], [1, 0], [0, 1], [1, 1]]))
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., 0].astype(float)
    box = ax.images[0].get_window_extent()
    height = pixels.shape[0]
    tile = pixels[int(height - box.y1) + 2 : int(height - box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2]
    size = tile.shape[0]
    assert size < 128
    checkerboard_only = tile[size * 2 // 5 : size * 3 // 5, 1 : size // 6]
    assert checkerboard_only.std() < 5
