"""Reading RELION STAR/MRC particle sets and writing classification outputs (sklearn_kerdensom.io)."""

import hashlib
import shutil
import tempfile
import tracemalloc
import warnings
from pathlib import Path

import joblib
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from sklearn_kerdensom import _chunks, _samples
from sklearn_kerdensom.alignment import apply_alignment
from sklearn_kerdensom.io import (
    OUTPUT_FILES,
    dask_stack,
    load_particles,
    read_particle_table,
    read_stack,
    write_classification,
)

PARTICLES = Path(__file__).parent / "data" / "particles"
RELION30_STAR = PARTICLES / "rln_proj_64.star"
RELION31_STAR = PARTICLES / "relion31.star"
RELION31_PIXEL_SIZE = 2.806


def _mrc_data(path):
    """Pixels read directly with mrcfile; relion31.mrcs has a pre-MRC2014 header, hence permissive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(path, permissive=True) as mrc:
            return np.array(mrc.data)


def _write_mrc(path, data, voxel_size=None):
    with warnings.catch_warnings():
        # mrcfile warns about the NaN/inf pixels that the error tests write on purpose.
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            if voxel_size is not None:
                mrc.voxel_size = voxel_size
    return path


def _write_star(path, particles, optics=None):
    blocks = {"particles": pd.DataFrame(particles)}
    if optics is not None:
        blocks = {"optics": pd.DataFrame(optics), **blocks}
    starfile.write(blocks, path)
    return path


def _stack(n=5, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size)).astype(np.float32)


def _snapshot(paths):
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in paths}


def _relocated_relion31(tmp_path):
    """relion31.star with its images named as in the original project, in a job folder of a moved copy.

    The shipped file names ``00000N@relion31.mrcs`` (next to it); here they read
    ``00000N@Extract/job133/Micrographs/relion31.mrcs``, relative to the project root, as RELION writes
    them, and the STAR file sits in ``project/Refine3D/job200/``, where that path does not resolve.
    """
    star = tmp_path / "project" / "Refine3D" / "job200" / "run_data.star"
    star.parent.mkdir(parents=True)
    text = RELION31_STAR.read_text()
    assert text.count("@relion31.mrcs") == 5
    star.write_text(text.replace("@relion31.mrcs", "@Extract/job133/Micrographs/relion31.mrcs"))
    return star


# --------------------------------------------------------------------------------------------------------
# Reading the real files
# --------------------------------------------------------------------------------------------------------


def test_relion30_file_without_optics():
    particles = load_particles(RELION30_STAR, align=False)
    table = starfile.read(RELION30_STAR)

    assert particles.images.dtype == np.float32
    assert particles.images.shape == (5, 64, 64)
    np.testing.assert_array_equal(particles.images, _mrc_data(PARTICLES / "rln_proj_64.mrcs"))
    pd.testing.assert_frame_equal(particles.metadata, table)
    assert particles.optics is None
    # No optics block, no detector columns and a zero MRC voxel size: the pixel size is unknown, which is
    # fine because the origins are zero.
    assert particles.pixel_size is None
    np.testing.assert_array_equal(particles.shifts, np.zeros((5, 2)))
    np.testing.assert_array_equal(particles.psi, table["rlnAnglePsi"].to_numpy())


def test_relion31_file_with_optics_merged():
    particles = load_particles(RELION31_STAR, align=False)
    blocks = starfile.read(RELION31_STAR, always_dict=True)

    assert particles.images.dtype == np.float32
    assert particles.images.shape == (5, 256, 256)
    np.testing.assert_array_equal(particles.images, _mrc_data(PARTICLES / "relion31.mrcs"))

    metadata = particles.metadata
    assert len(metadata) == 5
    assert set(blocks["particles"].columns) | set(blocks["optics"].columns) == set(metadata.columns)
    pd.testing.assert_frame_equal(metadata[blocks["particles"].columns], blocks["particles"])
    np.testing.assert_array_equal(metadata["rlnImagePixelSize"], np.full(5, RELION31_PIXEL_SIZE))
    np.testing.assert_array_equal(metadata["rlnVoltage"], np.full(5, 300.0))
    pd.testing.assert_frame_equal(particles.optics, blocks["optics"])

    assert particles.pixel_size == RELION31_PIXEL_SIZE
    expected_shifts = blocks["particles"][["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / 2.806
    np.testing.assert_array_equal(particles.shifts, expected_shifts)
    np.testing.assert_array_equal(particles.psi, blocks["particles"]["rlnAnglePsi"].to_numpy())


def test_pre_mrc2014_header_is_read_quietly():
    # relion31.mrcs has no "MAP " ID and a zero machine stamp, which strict mrcfile rejects.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        particles = load_particles(RELION31_STAR, align=False)
    assert particles.images.shape == (5, 256, 256)


def test_align_applies_the_file_alignment():
    raw = load_particles(RELION31_STAR, align=False)
    aligned = load_particles(RELION31_STAR)

    assert aligned.images.dtype == np.float32
    np.testing.assert_array_equal(aligned.images, apply_alignment(raw.images, raw.shifts, raw.psi))
    assert not np.allclose(aligned.images, raw.images)
    pd.testing.assert_frame_equal(aligned.metadata, raw.metadata)


def record_temporary_files(monkeypatch):
    """The directories that the package's temporary files are made in, as they are made."""
    directories = []
    make = tempfile.TemporaryFile

    def recording(*args, dir=None, **kwargs):
        directories.append(str(dir) if dir is not None else tempfile.gettempdir())
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(_samples.tempfile, "TemporaryFile", recording)
    return directories


def _aligned_set(tmp_path, n=23, size=16):
    """A stack of ``n`` images with alignments, named out of order by a RELION 3.0 STAR file."""
    rng = np.random.default_rng(3)
    _write_mrc(tmp_path / "stack.mrcs", _stack(n, size=size))
    order = rng.permutation(n) + 1
    return _write_star(
        tmp_path / "particles.star",
        {
            "rlnImageName": [f"{index}@stack.mrcs" for index in order],
            "rlnOriginX": rng.normal(scale=2.0, size=n),
            "rlnOriginY": rng.normal(scale=2.0, size=n),
            "rlnAnglePsi": rng.uniform(0.0, 360.0, n),
        },
    )


@pytest.mark.parametrize("align", [False, True])
def test_scratch_dir_gives_a_memory_map_of_the_same_images(tmp_path, monkeypatch, align):
    star = _aligned_set(tmp_path)
    in_memory = load_particles(star, align=align)
    # Chunks of 4 images: reading, checking and aligning cross chunk boundaries.
    monkeypatch.setattr(_chunks, "MAX_CHUNK_ROWS", 4)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    directories = record_temporary_files(monkeypatch)
    mapped = load_particles(star, align=align, scratch_dir=scratch, n_jobs=2)

    assert directories == [str(scratch)]
    assert isinstance(mapped.images, np.memmap)
    assert mapped.images.dtype == np.float32
    np.testing.assert_array_equal(mapped.images, in_memory.images)


def test_alignment_runs_on_threads_under_a_process_backend(tmp_path):
    # Processes would align copies of the images; scikit-learn users often configure loky.
    star = _aligned_set(tmp_path)
    expected = load_particles(star)
    with joblib.parallel_config(backend="loky"):
        np.testing.assert_array_equal(load_particles(star, n_jobs=2).images, expected.images)
        raw = load_particles(star, align=False)
        aligned = apply_alignment(raw.images, raw.shifts, raw.psi, n_jobs=2)
    np.testing.assert_array_equal(aligned, expected.images)


def test_images_are_read_and_aligned_without_a_second_copy(tmp_path, monkeypatch):
    star = _aligned_set(tmp_path, n=512, size=32)
    monkeypatch.setattr(_chunks, "MAX_CHUNK_ROWS", 8)
    data_bytes = 512 * 32 * 32 * 4

    tracemalloc.start()
    try:
        load_particles(star)
        in_memory_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        load_particles(star, scratch_dir=tmp_path)
        scratch_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The images themselves plus chunk-sized temporaries (8 images read as float32, checked as bool, each
    # resampled in float64) and the metadata; aligning into a second array would add data_bytes.
    assert in_memory_peak < 1.5 * data_bytes
    assert scratch_peak < 0.25 * data_bytes


def test_non_finite_pixels_are_found_in_any_chunk(tmp_path, monkeypatch):
    images = _stack(10)
    images[7, 1, 2] = np.nan
    _write_mrc(tmp_path / "stack.mrcs", images)
    star = _write_star(
        tmp_path / "particles.star", {"rlnImageName": [f"{i}@stack.mrcs" for i in range(1, 11)]}
    )
    monkeypatch.setattr(_chunks, "MAX_CHUNK_ROWS", 3)
    with pytest.raises(ValueError, match=r"particle row 7 .*image 8 of 'stack\.mrcs'.*NaN or infinite"):
        load_particles(star, scratch_dir=tmp_path)


def test_relocated_stack_is_found_with_image_root(tmp_path):
    star = _relocated_relion31(tmp_path)
    expected = _mrc_data(PARTICLES / "relion31.mrcs")

    with pytest.raises(FileNotFoundError, match=r"Extract/job133/Micrographs/relion31\.mrcs") as error:
        load_particles(star, align=False)
    assert str(star.parent / "Extract/job133/Micrographs/relion31.mrcs") in str(error.value)

    # image_root/<path as written>: the project root.
    moved = tmp_path / "project" / "Extract" / "job133" / "Micrographs" / "relion31.mrcs"
    moved.parent.mkdir(parents=True)
    shutil.copyfile(PARTICLES / "relion31.mrcs", moved)
    particles = load_particles(star, image_root=tmp_path / "project", align=False)
    np.testing.assert_array_equal(particles.images, expected)
    assert particles.metadata["rlnImageName"].str.startswith("00000").all()  # names kept as written

    # image_root/<basename>: a folder holding the stack itself.
    particles = load_particles(star, image_root=PARTICLES, align=False)
    np.testing.assert_array_equal(particles.images, expected)


def test_missing_stack_error_lists_the_places_looked_at(tmp_path):
    star = _relocated_relion31(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        load_particles(star, image_root=tmp_path, align=False)
    message = str(error.value)
    assert "'Extract/job133/Micrographs/relion31.mrcs'" in message
    assert str(tmp_path / "Extract/job133/Micrographs/relion31.mrcs") in message
    assert str(tmp_path / "relion31.mrcs") in message


def test_read_stack_is_memory_mapped_and_read_only():
    stack = read_stack(PARTICLES / "rln_proj_64.mrcs")
    assert isinstance(stack, np.memmap)
    assert stack.shape == (5, 64, 64)
    assert not stack.flags.writeable
    np.testing.assert_array_equal(stack, _mrc_data(PARTICLES / "rln_proj_64.mrcs"))


def test_input_files_are_not_modified(tmp_path):
    inputs = sorted(PARTICLES.iterdir())
    before = _snapshot(inputs)
    for star in (RELION30_STAR, RELION31_STAR):
        particles = load_particles(star)
        particles = load_particles(star, align=False)
        particles.images[:] = 0  # the returned images are a copy, not a view of the stack
    write_classification(
        tmp_path / "out",
        averages=_stack(2),
        representatives=_stack(2),
        labels=[0, 1, 1, 0, 1],
        node_positions=[[0, 0], [1, 0]],
        metadata=particles.metadata,
    )
    assert _snapshot(inputs) == before


# --------------------------------------------------------------------------------------------------------
# Addressing and pixel sizes, on synthetic files
# --------------------------------------------------------------------------------------------------------


def test_image_addressing_forms(tmp_path):
    stack = _write_mrc(tmp_path / "stack.mrcs", _stack(3))
    single = _write_mrc(tmp_path / "single.mrc", _stack(1, seed=1)[0])  # a 2-D file is one image
    (tmp_path / "sub").mkdir()
    other = _write_mrc(tmp_path / "sub" / "other.mrcs", _stack(2, seed=2))
    names = [
        "000002@stack.mrcs",
        "single.mrc",
        "3@stack.mrcs:mrcs",
        f"2@{other}",
        "1@sub/other.mrcs",
    ]
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": names})

    particles = load_particles(star, align=False)

    expected = [
        _mrc_data(stack)[1],
        _mrc_data(single),
        _mrc_data(stack)[2],
        _mrc_data(other)[1],
        _mrc_data(other)[0],
    ]
    np.testing.assert_array_equal(particles.images, np.stack(expected))
    assert particles.metadata["rlnImageName"].tolist() == names


def test_relion30_pixel_columns(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(2))
    star = _write_star(
        tmp_path / "particles.star",
        {
            "rlnImageName": ["1@stack.mrcs", "2@stack.mrcs"],
            "rlnDetectorPixelSize": [14.0, 14.0],  # µm
            "rlnMagnification": [50000.0, 50000.0],
            "rlnOriginX": [1.5, -2.0],  # pixels
            "rlnAnglePsi": [10.0, 350.0],
        },
    )
    particles = load_particles(star, align=False)
    assert particles.pixel_size == pytest.approx(2.8)
    np.testing.assert_array_equal(particles.shifts, [[1.5, 0.0], [-2.0, 0.0]])
    np.testing.assert_array_equal(particles.psi, [10.0, 350.0])


def test_pixel_size_from_mrc_header_and_argument(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(2), voxel_size=2.0)
    star = _write_star(
        tmp_path / "particles.star",
        {"rlnImageName": ["1@stack.mrcs", "2@stack.mrcs"], "rlnOriginXAngst": [4.0, 1.0]},
    )
    particles = load_particles(star, align=False)
    assert particles.pixel_size == 2.0
    np.testing.assert_array_equal(particles.shifts, [[2.0, 0.0], [0.5, 0.0]])

    particles = load_particles(star, align=False, pixel_size=4.0)
    assert particles.pixel_size == 4.0
    np.testing.assert_array_equal(particles.shifts, [[1.0, 0.0], [0.25, 0.0]])


def test_pixel_size_argument_overrides_optics():
    particles = load_particles(RELION31_STAR, align=False, pixel_size=1.403)
    assert particles.pixel_size == 1.403
    np.testing.assert_array_equal(particles.metadata["rlnImagePixelSize"], np.full(5, RELION31_PIXEL_SIZE))


# --------------------------------------------------------------------------------------------------------
# Reading errors
# --------------------------------------------------------------------------------------------------------


def test_missing_star_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.star"):
        load_particles(tmp_path / "nothere.star")


def test_star_file_without_image_column(tmp_path):
    star = _write_star(tmp_path / "particles.star", {"rlnAnglePsi": [0.0, 1.0]})
    with pytest.raises(ValueError, match="rlnImageName"):
        load_particles(star, align=False)


def test_align_must_be_a_boolean():
    """align="no" was true, and aligned the particles (API trial)."""
    with pytest.raises(ValueError, match="align must be True or False; got 'no'"):
        load_particles(RELION31_STAR, align="no")


def test_referenced_stack_missing(tmp_path):
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": ["1@gone.mrcs"]})
    with pytest.raises(FileNotFoundError, match=r"gone\.mrcs"):
        load_particles(star, align=False)


@pytest.mark.parametrize("index", [0, -1, 6])
def test_image_index_out_of_range(tmp_path, index):
    _write_mrc(tmp_path / "stack.mrcs", _stack(5))
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": ["1@stack.mrcs", f"{index}@stack.mrcs"]})
    with pytest.raises(ValueError, match=rf"row 1 .*image {index} of stack 'stack\.mrcs'.* holds 5 image"):
        load_particles(star, align=False)


def test_a_bare_name_reads_a_single_image_file_but_not_a_stack(tmp_path):
    """A name without ``N@`` is a whole file: one image (RELION's single-particle files). For a stack of
    several images it is an error (it silently read image 1 for every such particle)."""
    images = _stack(2)
    for number, image in enumerate(images):
        _write_mrc(tmp_path / f"particle{number}.mrc", image[None])
    star = _write_star(tmp_path / "single.star", {"rlnImageName": ["particle0.mrc", "particle1.mrc"]})
    np.testing.assert_array_equal(load_particles(star, align=False).images, images)

    _write_mrc(tmp_path / "stack.mrcs", _stack(5))
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": ["1@stack.mrcs", "stack.mrcs"]})
    with pytest.raises(
        ValueError,
        match=r"row 1 .*names stack 'stack\.mrcs' without an image number, but "
        r"it holds 5 images; name each particle's image as N@stack\.mrcs",
    ):
        load_particles(star, align=False)


def test_non_integer_image_index(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(5))
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": ["1@stack.mrcs", "x2@stack.mrcs"]})
    with pytest.raises(ValueError, match=r"row 1 .*'x2'"):
        load_particles(star, align=False)


def test_images_of_different_sizes(tmp_path):
    _write_mrc(tmp_path / "small.mrcs", _stack(2, size=8))
    _write_mrc(tmp_path / "large.mrcs", _stack(2, size=10))
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": ["1@small.mrcs", "1@large.mrcs"]})
    with pytest.raises(ValueError, match="differ in size"):
        load_particles(star, align=False)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels(tmp_path, bad_value):
    images = _stack(3)
    images[1, 4, 4] = bad_value
    _write_mrc(tmp_path / "stack.mrcs", images)
    star = _write_star(
        tmp_path / "particles.star", {"rlnImageName": ["1@stack.mrcs", "3@stack.mrcs", "2@stack.mrcs"]}
    )
    with pytest.raises(ValueError, match=r"particle row 2 .*image 2 of 'stack\.mrcs'.*NaN or infinite"):
        load_particles(star, align=False)


def test_origins_in_angstrom_without_pixel_size(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(1))  # voxel size 0: unknown
    star = _write_star(
        tmp_path / "particles.star", {"rlnImageName": ["1@stack.mrcs"], "rlnOriginYAngst": [3.0]}
    )
    with pytest.raises(ValueError, match=r"rlnOriginXAngst.*pass pixel_size=\."):
        load_particles(star, align=False)
    from .test_cli import kerdensom

    code, _, stderr = kerdensom("classify", star, "--mask-radius", "3", "--out", tmp_path / "out")
    assert code == 1 and "pass --pixel-size." in stderr and "pixel_size" not in stderr, stderr


def test_optics_group_not_in_optics_block(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(2))
    star = _write_star(
        tmp_path / "particles.star",
        {"rlnImageName": ["1@stack.mrcs", "2@stack.mrcs"], "rlnOpticsGroup": [1, 2]},
        optics={"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]},
    )
    with pytest.raises(ValueError, match=r"row 1 .*optics group 2"):
        load_particles(star, align=False)


def _stack_with_header(path, **fields):
    """A stack of 5 float32 images of 64 x 64 px whose header fields are then overwritten, as in a
    corrupted file or one whose header a faulty writer got wrong."""
    _write_mrc(path, _stack(5, size=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.open(path, mode="r+") as mrc:
            for name, value in fields.items():
                setattr(mrc.header, name, value)
    return path


def _load_through_star(stack):
    star = _write_star(stack.parent / "particles.star", {"rlnImageName": [f"1@{stack.name}"]})
    return load_particles(star, align=False)


def _dask_stack(stack):
    pytest.importorskip("dask")
    return dask_stack(stack)


MRC_READERS = pytest.mark.parametrize(
    "reader",
    [read_stack, _load_through_star, _dask_stack],
    ids=["read_stack", "load_particles", "dask_stack"],
)


@MRC_READERS
@pytest.mark.parametrize(
    ("fields", "described", "expected", "actual"),
    [
        ({"nx": 63}, "nx=63, ny=64, nz=5, mode 2: float32", 80640, 81920),  # sheared rows
        ({"mode": 1}, "nx=64, ny=64, nz=5, mode 1: int16", 40960, 81920),  # float bits read as integers
        ({"nz": 4}, "nx=64, ny=64, nz=4, mode 2: float32", 65536, 81920),
        ({"nz": 7}, "nx=64, ny=64, nz=7, mode 2: float32", 114688, 81920),
    ],
)
def test_header_that_disagrees_with_the_file_size(tmp_path, reader, fields, described, expected, actual):
    stack = _stack_with_header(tmp_path / "stack.mrcs", **fields)
    with pytest.raises(ValueError) as error:
        reader(stack)
    message = str(error.value)
    assert message.startswith(f"{stack} is not a readable MRC file: its header ({described}")
    assert f"calls for {expected} bytes of data, but the file holds {actual}" in message


@MRC_READERS
@pytest.mark.parametrize("fields", [{"nz": -5}, {"nx": 0}, {"ny": -(2**31)}])
def test_header_size_below_one_is_a_one_line_error(tmp_path, reader, fields):
    stack = _stack_with_header(tmp_path / "stack.mrcs", **fields)
    with pytest.raises(
        ValueError, match=r"stack\.mrcs is not a readable MRC file: .*expected positive"
    ) as error:
        reader(stack)
    ((name, value),) = fields.items()
    assert f"{name}={value}" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("block", "column"),
    [("particles", "rlnAnglePsi"), ("particles", "rlnImageName"), ("optics", "rlnImagePixelSize")],
)
def test_repeated_column_is_refused(tmp_path, block, column):
    _write_mrc(tmp_path / "stack.mrcs", _stack(2))
    blocks = {
        "optics": {"rlnOpticsGroup": ["1"], "rlnImagePixelSize": ["2.0"]},
        "particles": {
            "rlnImageName": ["1@stack.mrcs", "2@stack.mrcs"],
            "rlnOpticsGroup": ["1", "1"],
            "rlnAnglePsi": ["10.0", "20.0"],
        },
    }
    # starfile cannot write a repeated column, so the file is written by hand.
    text = ""
    for name, columns in blocks.items():
        labels = [*columns, column] if name == block else list(columns)
        values = [*columns.values(), columns[column]] if name == block else list(columns.values())
        text += f"\ndata_{name}\n\nloop_\n" + "".join(f"_{label}\n" for label in labels)
        text += "".join(" ".join(row) + "\n" for row in zip(*values, strict=True))
    star = tmp_path / "particles.star"
    star.write_text(text)
    with pytest.raises(
        ValueError, match=rf"particles\.star: block data_{block} has the column '{column}' 2 times"
    ):
        load_particles(star, align=False)


def test_read_particle_table_finds_the_stacks_without_reading_them(tmp_path, monkeypatch):
    star = _relocated_relion31(tmp_path)

    def no_mrc_reading(*args, **kwargs):
        raise AssertionError("an MRC file was opened")

    monkeypatch.setattr(mrcfile, "mmap", no_mrc_reading)
    monkeypatch.setattr(mrcfile, "open", no_mrc_reading)
    monkeypatch.setattr(mrcfile.mrcfile, "MrcFile", no_mrc_reading)
    table = read_particle_table(star, image_root=PARTICLES)
    monkeypatch.undo()

    written = "Extract/job133/Micrographs/relion31.mrcs"
    assert table.star_path == star
    assert table.stack_paths == {written: PARTICLES / "relion31.mrcs"}
    assert table.addresses == [(index, written) for index in range(1, 6)]
    particles = load_particles(star, image_root=PARTICLES, align=False)
    pd.testing.assert_frame_equal(table.metadata, particles.metadata)
    pd.testing.assert_frame_equal(table.optics, particles.optics)

    with pytest.raises(FileNotFoundError, match=r"stack 'Extract/job133/Micrographs/relion31\.mrcs'"):
        read_particle_table(star)


def test_stack_paths_of_every_image_name_form(tmp_path):
    _write_mrc(tmp_path / "stack.mrcs", _stack(3))
    (tmp_path / "sub").mkdir()
    other = _write_mrc(tmp_path / "sub" / "other.mrcs", _stack(2))
    names = ["2@stack.mrcs", "stack.mrcs", "3@stack.mrcs:mrcs", f"2@{other}", "1@sub/other.mrcs"]
    star = _write_star(tmp_path / "particles.star", {"rlnImageName": names})

    table = read_particle_table(star)

    assert table.stack_paths == {
        "stack.mrcs": tmp_path / "stack.mrcs",
        str(other): other,
        "sub/other.mrcs": tmp_path / "sub" / "other.mrcs",
    }
    assert table.addresses == [
        (2, "stack.mrcs"),
        (1, "stack.mrcs"),
        (3, "stack.mrcs"),
        (2, str(other)),
        (1, "sub/other.mrcs"),
    ]


@pytest.mark.parametrize("star", [RELION30_STAR, RELION31_STAR])
def test_load_particles_from_a_table_reads_the_star_file_once(monkeypatch, star):
    expected = load_particles(star)
    reads = []
    read = starfile.read

    def counting(*args, **kwargs):
        reads.append(args)
        return read(*args, **kwargs)

    monkeypatch.setattr(starfile, "read", counting)
    table = read_particle_table(star)
    particles = load_particles(table)

    assert len(reads) == 1
    assert particles.keys() == expected.keys()
    for key in ("images", "shifts", "psi"):
        np.testing.assert_array_equal(particles[key], expected[key])
    pd.testing.assert_frame_equal(particles.metadata, expected.metadata)
    assert particles.metadata.attrs == expected.metadata.attrs
    assert particles.pixel_size == expected.pixel_size
    if expected.optics is None:
        assert particles.optics is None
    else:
        pd.testing.assert_frame_equal(particles.optics, expected.optics)


def test_load_particles_table_errors(tmp_path):
    star = _relocated_relion31(tmp_path)
    table = read_particle_table(star, image_root=PARTICLES)
    # The image_root it was read with, spelled differently, is the same.
    images = load_particles(table, image_root=PARTICLES / ".." / "particles", align=False).images
    assert images.shape == (5, 256, 256)
    with pytest.raises(ValueError, match=r"image_root=.* differs from the one the particle table's stacks"):
        load_particles(table, image_root=tmp_path, align=False)
    with pytest.raises(ValueError, match="result of read_particle_table; got a dict without 'stack_paths'"):
        load_particles({key: value for key, value in table.items() if key != "stack_paths"})
    with pytest.raises(ValueError, match="4 metadata rows and 5 image addresses, in 1 stacks of which"):
        load_particles({**table, "metadata": table.metadata.iloc[:4]})
    with pytest.raises(ValueError, match="in 1 stacks of which stack_paths has 0"):
        load_particles({**table, "stack_paths": {}})


def test_bad_image_root_and_pixel_size(tmp_path):
    with pytest.raises(FileNotFoundError, match="image_root"):
        load_particles(RELION31_STAR, image_root=tmp_path / "nowhere", align=False)
    with pytest.raises(FileNotFoundError, match="scratch_dir is not an existing directory"):
        load_particles(RELION31_STAR, scratch_dir=tmp_path / "nowhere", align=False)
    with pytest.raises(ValueError, match="pixel_size"):
        load_particles(RELION31_STAR, pixel_size=0.0, align=False)


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------

LABELS = np.array([0, 0, 1, 3, 3])  # class 2 is empty
POSITIONS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [1.5, 1.0]])  # a 2 x 2 hex map


def _write(out_dir, **kwargs):
    arguments = {
        "averages": _stack(4, seed=10),
        "representatives": _stack(4, seed=11),
        "labels": LABELS,
        "node_positions": POSITIONS,
        **kwargs,
    }
    return write_classification(out_dir, **arguments), arguments


def test_written_files_read_back_identical(tmp_path):
    loaded = load_particles(RELION31_STAR, align=False)
    metadata_before = loaded.metadata.copy(deep=True)
    paths, arguments = _write(tmp_path / "new" / "out", metadata=loaded.metadata, pixel_size=2.806)

    assert paths == {key: tmp_path / "new" / "out" / name for key, name in OUTPUT_FILES.items()}
    for key in ("averages", "representatives"):
        with mrcfile.open(paths[key]) as mrc:
            assert mrc.data.dtype == np.float32
            np.testing.assert_array_equal(mrc.data, arguments[key])
            assert mrc.is_image_stack()
            assert mrc.voxel_size.x == pytest.approx(2.806, rel=1e-6)

    original = starfile.read(RELION31_STAR, always_dict=True)
    written = starfile.read(paths["particles"], always_dict=True)
    assert list(written) == ["optics", "particles"]
    pd.testing.assert_frame_equal(written["optics"], original["optics"])
    particles = written["particles"]
    # The input's class numbers are kept under another label.
    previous = [column for column in original["particles"].columns if column != "rlnClassNumber"]
    assert list(particles.columns) == [
        *previous,
        "kerdensomPreviousClassNumber",
        "rlnClassNumber",
        "kerdensomMapX",
        "kerdensomMapY",
    ]
    np.testing.assert_array_equal(
        particles["kerdensomPreviousClassNumber"], original["particles"]["rlnClassNumber"]
    )
    np.testing.assert_array_equal(particles["rlnClassNumber"], LABELS + 1)
    np.testing.assert_array_equal(particles["kerdensomMapX"], POSITIONS[LABELS, 0])
    np.testing.assert_array_equal(particles["kerdensomMapY"], POSITIONS[LABELS, 1])
    kept = original["particles"].columns.drop("rlnClassNumber")
    pd.testing.assert_frame_equal(particles[kept], original["particles"][kept])

    classes = starfile.read(paths["classes"])
    np.testing.assert_array_equal(classes["rlnClassNumber"], [1, 2, 3, 4])
    # Outside the current directory (a RELION project), files are named by their absolute path.
    averages = (tmp_path / "new" / "out" / "averages.mrcs").as_posix()
    assert classes["rlnReferenceImage"].tolist() == [f"00000{k}@{averages}" for k in (1, 2, 3, 4)]
    # RELION's class selection reads run_model.star, and run_data.star beside it.
    model = starfile.read(paths["model"], always_dict=True)
    assert model["model_general"]["rlnNrClasses"] == 4
    assert model["model_classes"]["rlnReferenceImage"].tolist() == classes["rlnReferenceImage"].tolist()
    np.testing.assert_array_equal(model["model_classes"]["rlnClassDistribution"], [0.4, 0.2, 0.0, 0.4])
    assert paths["data"].read_bytes() == paths["particles"].read_bytes()
    np.testing.assert_array_equal(classes["kerdensomClassCount"], [2, 1, 0, 2])
    np.testing.assert_array_equal(classes["rlnClassDistribution"], [0.4, 0.2, 0.0, 0.4])
    np.testing.assert_array_equal(classes[["kerdensomMapX", "kerdensomMapY"]].to_numpy(), POSITIONS)

    # The caller's metadata (optics attrs included) is left as it was.
    pd.testing.assert_frame_equal(loaded.metadata, metadata_before)
    assert loaded.metadata.attrs == metadata_before.attrs


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((4, 8, 8), np.nan), "finite numbers within float32's range"),
        (np.full((4, 8, 8), 1e39), "finite numbers within float32's range"),
        (np.ones((4, 8, 8), dtype=complex), "must hold real numbers"),
        (np.ones((4, 64)), r"shape \(n_classes, height, width\)"),
    ],
)
def test_class_images_that_an_mrc_file_cannot_hold_are_refused(tmp_path, images, message):
    """NaN, float32 overflow and complex images were written as they were (API trial)."""
    with pytest.raises(ValueError, match=message):
        _write(tmp_path / "out", averages=images)
    assert not (tmp_path / "out").exists()


def test_written_particle_table_loads_again(tmp_path):
    loaded = load_particles(RELION31_STAR, align=False)
    paths, _ = _write(tmp_path, metadata=loaded.metadata)
    # The image names are kept as written, relative to the original STAR file: relocate them (or, as
    # kerdensom classify does, rewrite them with relocate_image_names).
    reloaded = load_particles(paths["particles"], image_root=PARTICLES, align=False)
    np.testing.assert_array_equal(reloaded.images, loaded.images)
    pd.testing.assert_frame_equal(
        reloaded.metadata.drop(
            columns=["rlnClassNumber", "kerdensomPreviousClassNumber", "kerdensomMapX", "kerdensomMapY"]
        ),
        loaded.metadata.drop(columns=["rlnClassNumber"]),
    )


def test_written_particle_table_relion30_and_without_metadata(tmp_path):
    loaded = load_particles(RELION30_STAR, align=False)
    paths, _ = _write(tmp_path / "rln30", metadata=loaded.metadata)
    written = starfile.read(paths["particles"], always_dict=True)
    assert list(written) == ["particles"]
    pd.testing.assert_frame_equal(written["particles"][loaded.metadata.columns], loaded.metadata)

    paths, _ = _write(tmp_path / "bare")
    particles = starfile.read(paths["particles"])
    assert list(particles.columns) == [
        "kerdensomParticleIndex",
        "rlnClassNumber",
        "kerdensomMapX",
        "kerdensomMapY",
    ]
    np.testing.assert_array_equal(particles["kerdensomParticleIndex"], np.arange(5))
    np.testing.assert_array_equal(particles["rlnClassNumber"], LABELS + 1)
    with mrcfile.open(paths["averages"]) as mrc:
        assert mrc.voxel_size.x == 0.0  # no pixel size given


def test_existing_output_is_not_overwritten(tmp_path):
    (tmp_path / "classes.star").write_text("keep me\n")
    with pytest.raises(FileExistsError, match=r"classes\.star"):
        _write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.star"]  # nothing else written
    assert (tmp_path / "classes.star").read_text() == "keep me\n"

    paths, arguments = _write(tmp_path, overwrite=True)
    assert starfile.read(paths["classes"])["kerdensomClassCount"].tolist() == [2, 1, 0, 2]
    with pytest.raises(FileExistsError, match=r"averages\.mrcs"):
        _write(tmp_path, averages=_stack(4, seed=99))
    with mrcfile.open(paths["averages"]) as mrc:
        np.testing.assert_array_equal(mrc.data, arguments["averages"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": [0, 0, 1, 4, 3]}, r"labels\[3\] = 4 is not a class"),
        ({"labels": [0, -1, 1, 3, 3]}, r"labels\[1\] = -1"),
        ({"labels": [0.5, 0, 1, 3, 3]}, "integer"),
        ({"node_positions": POSITIONS[:3]}, r"node_positions must have shape \(4, 2\)"),
        ({"representatives": _stack(3)}, "representatives must have the shape of averages"),
        ({"averages": _stack(4)[0]}, "averages must have shape"),
        ({"metadata": pd.DataFrame({"a": [1, 2]})}, "metadata has 2 rows"),
        ({"pixel_size": -1.0}, "pixel_size"),
    ],
)
def test_invalid_outputs_are_rejected_before_writing(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        _write(tmp_path / "out", **change)
    assert not (tmp_path / "out").exists()


def test_classify_real_particles_end_to_end(tmp_path):
    """RELION particles in, KerDenSOM classes out, written files read back identically."""
    from sklearn.pipeline import make_pipeline

    from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
    from sklearn_kerdensom.io import write_class_averager

    particles = load_particles(PARTICLES / "relion31.star")
    pipeline = make_pipeline(
        MaskVectorizer(circular_mask((256, 256), 100)), KerDenSOM(2, 1, max_iter=20, random_state=0)
    )
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        write_class_averager(ClassAverager(pipeline), tmp_path / "unfitted")
    assert not (tmp_path / "unfitted").exists()
    averager = ClassAverager(pipeline).fit(particles.images)
    paths = write_class_averager(
        averager, tmp_path / "out", metadata=particles.metadata, pixel_size=particles.pixel_size
    )
    with mrcfile.open(paths["averages"]) as mrc:
        np.testing.assert_array_equal(mrc.data, averager.averages_)
        assert mrc.voxel_size.x == pytest.approx(2.806, rel=1e-6)
    with mrcfile.open(paths["representatives"]) as mrc:
        np.testing.assert_array_equal(mrc.data, averager.representatives_.astype(np.float32))
    written = starfile.read(paths["particles"], always_dict=True)
    np.testing.assert_array_equal(written["particles"]["rlnClassNumber"], averager.labels_ + 1)
    classes = starfile.read(paths["classes"])
    np.testing.assert_array_equal(classes["kerdensomClassCount"], averager.counts_)
    np.testing.assert_array_equal(classes["kerdensomMapX"], averager.node_positions_[:, 0])


def _relion_project(tmp_path):
    """A RELION project: the stack in Extract/job007/Micrographs, the STAR file in Refine3D/job200,
    image names relative to the project directory, as RELION writes them."""
    project = tmp_path / "project"
    stack = project / "Extract" / "job007" / "Micrographs" / "mic001.mrcs"
    stack.parent.mkdir(parents=True)
    shutil.copyfile(PARTICLES / "relion31.mrcs", stack)
    star = starfile.read(RELION31_STAR, always_dict=True)
    star["particles"]["rlnImageName"] = [
        f"{index:06d}@Extract/job007/Micrographs/mic001.mrcs" for index in range(1, 6)
    ]
    (project / "Refine3D" / "job200").mkdir(parents=True)
    starfile.write(star, project / "Refine3D" / "job200" / "run_data.star")
    return project, project / "Refine3D" / "job200" / "run_data.star"


def test_image_names_resolve_from_the_project_directory_as_in_relion(tmp_path, monkeypatch):
    # On 895f8d5 every RELION job's STAR file failed unless image_root pointed at the project.
    project, star = _relion_project(tmp_path)
    monkeypatch.chdir(project)
    particles = load_particles(star.relative_to(project), align=False)
    np.testing.assert_array_equal(particles.images, _mrc_data(PARTICLES / "relion31.mrcs"))
    # The current directory comes first, as in RELION; a stack beside the STAR file comes after.
    beside = star.parent / "Extract" / "job007" / "Micrographs" / "mic001.mrcs"
    beside.parent.mkdir(parents=True)
    shutil.copyfile(PARTICLES / "rln_proj_64.mrcs", beside)
    assert read_particle_table(star).stack_paths["Extract/job007/Micrographs/mic001.mrcs"] == (
        project / "Extract" / "job007" / "Micrographs" / "mic001.mrcs"
    )
    monkeypatch.chdir(tmp_path)
    assert read_particle_table(star).stack_paths["Extract/job007/Micrographs/mic001.mrcs"] == beside


def test_a_job_file_finds_its_stacks_from_anywhere_through_the_project_above_it(tmp_path, monkeypatch):
    project, star = _relion_project(tmp_path)
    monkeypatch.chdir(tmp_path)  # not the project directory
    table = read_particle_table(star)
    assert list(table.stack_paths.values()) == [project / "Extract/job007/Micrographs/mic001.mrcs"]


def test_missing_stack_error_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    project, star = _relion_project(tmp_path)
    (project / "Extract/job007/Micrographs/mic001.mrcs").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as error:
        read_particle_table(star)
    message = str(error.value)
    assert str(tmp_path / "Extract/job007/Micrographs/mic001.mrcs") in message  # the current directory
    assert str(star.parent / "Extract/job007/Micrographs/mic001.mrcs") in message  # beside the STAR file
    assert str(project / "Extract/job007/Micrographs/mic001.mrcs") in message  # and above it
    assert "Run from the RELION project directory" in message and "with image_root=." in message
    # The command line names its own options (a new-user trial found image_root= and "classify" in select's).
    from .test_cli import kerdensom

    for command in (["classify", star, "--mask-radius", "20"], ["select", star, "--classes", "1"]):
        code, _, stderr = kerdensom(*command, "--out", tmp_path / "out", cwd=tmp_path)
        assert code == 1 and "with --image-root DIR." in stderr and "image_root" not in stderr, stderr


@pytest.mark.parametrize("scratch", [False, True])
def test_progress_reports_every_image_read_and_aligned(tmp_path, scratch):
    reports = []
    particles = load_particles(
        RELION31_STAR,
        scratch_dir=tmp_path if scratch else None,
        progress=lambda *report: reports.append(report),
    )
    stages = [stage for stage, _ in reports]
    assert stages == sorted(stages, key=["read", "align"].index)  # every read before any alignment
    for stage in ("read", "align"):
        assert sum(n for name, n in reports if name == stage) == len(particles.images)
