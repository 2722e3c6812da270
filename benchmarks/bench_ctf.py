"""Does the map show the structure or the microscope? Map position against defocus and path, with and
without CTF correction.

Data: the simulator's AdK path particles *not* phase-flipped, as RELION extracts them
(``make_adk_path(1000, binning=2, phase_flip=False)``: 32x32 px of 2.4 Å, SNR 0.1, defoci 1-2.5 µm,
300 kV), fitted by ``MaskVectorizer(circular_mask(.., 13)) -> KerDenSOM(7, 7, random_state=seed)``
(the defaults) on the images as they are and after :class:`sklearn_kerdensom.ctf.PhaseFlipper`
(``kerdensom classify``'s default ``--ctf auto`` on a STAR file with CTF columns), 3 data seeds.

Measures (:func:`sklearn_kerdensom.metrics.position_correlation`): R of the defocus, and of the path
coordinate, against the best linear function of each particle's map position (x, y of its node). A map
that shows the structure has a high path R and a defocus R near 0.

    python benchmarks/bench_ctf.py [--quick]
"""

import argparse

import _common
import numpy as np
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.ctf import PhaseFlipper
from sklearn_kerdensom.datasets import make_adk_path
from sklearn_kerdensom.metrics import position_correlation

CORRECTIONS = {
    "none": lambda data: data.images,
    "phase-flip": lambda data: PhaseFlipper(pixel_size=data.pixel_size).fit_transform(
        data.images, ctf=data.ctf
    ),
}


def correlations(images, data, seed):
    mask = circular_mask(images.shape[1:], 13)
    averager = ClassAverager(make_pipeline(MaskVectorizer(mask), KerDenSOM(random_state=seed))).fit(images)
    positions = averager.node_positions_[averager.labels_]
    return {
        "defocus R": position_correlation(positions, data.defocus),
        "path R": position_correlation(positions, data.path_coordinate),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 particles, 1 seed")
    args = parser.parse_args()
    n_samples, seeds = (500, range(1)) if args.quick else (1000, range(3))

    info = _common.machine_info()
    _common.print_header(f"bench_ctf: {n_samples} unflipped AdK path particles of 32x32, 7x7 maps", info)
    results = {correction: [] for correction in CORRECTIONS}
    for seed in seeds:
        data = make_adk_path(n_samples, binning=2, phase_flip=False, random_state=seed)
        for correction, corrected in CORRECTIONS.items():
            results[correction].append(correlations(corrected(data), data, seed))
    rows = []
    for correction, runs in results.items():
        for name in ("defocus R", "path R"):
            values = [run[name] for run in runs]
            rows.append([correction, name, np.mean(values), np.min(values), np.max(values)])
    _common.table(["correction", "measure", "mean", "min", "max"], rows, {2: ".3f", 3: ".3f", 4: ".3f"})
    _common.write_json(
        "bench_ctf_quick" if args.quick else "bench_ctf",
        {"machine": info, "n_samples": n_samples, "seeds": list(seeds), "results": results},
    )


if __name__ == "__main__":
    main()
