"""The ``kerdensom classify`` command end to end: memory held and time to read the particles.

Writes a RELION 3.1 particle set to a temporary directory (default 60 000 images of
64 x 64 in one float32 MRC stack, 1 GB, with random origins and in-plane angles),
then runs ``kerdensom classify`` on it in a child process, sampling the child's
``RssAnon`` every 20 ms (pages of the mapped stack and of scratch files are page
cache, not memory the process holds) and its ``VmHWM``:

* with the images in memory, aligned on one thread (``--jobs 1``);
* with the images in memory, aligned on every processor (the default);
* with ``--scratch``: the aligned images and their masked vectors in temporary
  memory-mapped files.

The fit is short (one annealing step of 5 iterations; ``bench_fit.py`` and
``bench_memmap.py`` measure fits): this measures what the command adds around
it. Reports the peak anonymous memory against the size of the images, and the
seconds the command prints for reading (and aligning) the particles. Writes
``results/bench_cli[_quick].json``.

    python benchmarks/bench_cli.py            # 60 000 images (~1 GB of disk)
    python benchmarks/bench_cli.py --quick    # 10 000 images
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

SIZE = 64
SHORT_FIT = ["--reg-initial", "1000", "--reg-final", "1000", "--steps", "1", "--max-iter", "5"]


def _write_particle_set(directory, n_images):
    import pandas as pd
    import starfile

    _common.write_mrc_stack(directory / "stack.mrcs", n_images, SIZE)
    rng = np.random.default_rng(1)
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnImagePixelSize": [2.0],
            "rlnImageSize": [SIZE],
            "rlnImageDimensionality": [2],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{index:06d}@stack.mrcs" for index in range(1, n_images + 1)],
            "rlnOpticsGroup": 1,
            "rlnOriginXAngst": rng.normal(scale=4.0, size=n_images),
            "rlnOriginYAngst": rng.normal(scale=4.0, size=n_images),
            "rlnAnglePsi": rng.uniform(0.0, 360.0, n_images),
        }
    )
    star = directory / "particles.star"
    starfile.write({"optics": optics, "particles": particles}, star)
    return star


def _classify(star, out, options):
    """Run the command; its peak RssAnon and VmHWM (MB), wall seconds, and the read seconds it prints."""
    command = [sys.executable, "-m", "sklearn_kerdensom.cli", "classify", str(star), "--mask-radius", "28"]
    command += [*SHORT_FIT, *options, "--out", str(out), "--overwrite"]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "MPLBACKEND": "Agg"}
        )
        peak_anon = peak_hwm = 0
        while process.poll() is None:
            peak_anon = max(peak_anon, _common.proc_status_kib("RssAnon", process.pid) or 0)
            peak_hwm = max(peak_hwm, _common.proc_status_kib("VmHWM", process.pid) or 0)
            time.sleep(0.02)
        output.seek(0)
        printed = output.read()
    if process.returncode != 0:
        raise RuntimeError(f"kerdensom classify failed:\n{printed[-4000:]}")
    read_seconds = float(re.search(r"read \d+ particles from .* in ([\d.]+)s", printed).group(1))
    return {
        "options": options,
        "wall_seconds": time.perf_counter() - start,
        "read_seconds": read_seconds,
        "peak_rss_anon_mb": peak_anon / 1024,
        "vm_hwm_mb": peak_hwm / 1024,
    }


_IMPORTS = """
import _common, matplotlib.pyplot, sklearn_kerdensom.cli, sklearn_kerdensom.io, sklearn_kerdensom.plotting
print(_common.proc_status_kib("RssAnon"))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 000 images")
    parser.add_argument("--images", type=int, default=None)
    args = parser.parse_args()
    n_images = args.images or (10_000 if args.quick else 60_000)
    data_mb = n_images * SIZE * SIZE * 4 / _common.MIB

    info = _common.machine_info()
    _common.print_header(f"bench_cli: kerdensom classify on {n_images} images of {SIZE} x {SIZE}", info)
    cases = {
        "in memory, --jobs 1": ["--jobs", "1"],
        "in memory, all processors": [],
        "--scratch (memory-mapped temporary files)": None,
    }
    imports_mb = int(_common.run_child(_IMPORTS, env={"MPLBACKEND": "Agg"})[0]) / 1024
    runs = {}
    with tempfile.TemporaryDirectory(prefix="kerdensom-bench-cli-") as directory:
        directory = Path(directory)
        star = _write_particle_set(directory, n_images)
        print(f"wrote {n_images} particles ({data_mb:.0f} MB of images)", flush=True)
        scratch = directory / "scratch"
        scratch.mkdir()
        for name, options in cases.items():
            options = ["--scratch", str(scratch)] if options is None else options
            runs[name] = _classify(star, directory / "out", options)
            print(f"  {name}: {runs[name]['peak_rss_anon_mb']:.0f} MB anonymous", flush=True)

    rows = [
        (
            name,
            run["read_seconds"],
            run["wall_seconds"],
            run["peak_rss_anon_mb"],
            (run["peak_rss_anon_mb"] - imports_mb) / data_mb,
            run["vm_hwm_mb"],
        )
        for name, run in runs.items()
    ]
    print(f"\nimages: {data_mb:.0f} MB float32; the command's imports alone: {imports_mb:.0f} MB anonymous")
    _common.table(
        ["run", "read s", "wall s", "peak RssAnon MB", "(less imports) / images", "VmHWM MB"],
        rows,
        {1: ".1f", 2: ".1f", 3: ".0f", 4: ".2f", 5: ".0f"},
    )
    print(
        "read s: reading and aligning the particles, as the command prints it; VmHWM includes mapped file pages."
    )
    _common.write_json(
        "bench_cli_quick" if args.quick else "bench_cli",
        {
            "machine": info,
            "n_images": n_images,
            "images_mb": data_mb,
            "imports_rss_anon_mb": imports_mb,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
