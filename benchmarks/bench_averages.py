"""Class averages of phase-flipped particles: the plain mean against Wiener-filtered averages.

Data: the simulator's AdK path particles, phase-flipped (``make_adk_path(1000, binning=2)``: 32x32 px of
2.4 Å, defoci 1-2.5 µm), at SNR 0.1 and 0.05, classified by the default
``MaskVectorizer(circular_mask(.., 13)) -> KerDenSOM(7, 7, random_state=0)``.

Measure: for every class, the correlation inside the mask of its average with the mean of its members'
true projections (the structure before the microscope's CTF), averaged over classes weighted by class
size, and unweighted (where small, noisy classes count as much as large ones). The plain mean
estimates the projections filtered by the members' mean |CTF|; the Wiener average
(:func:`sklearn_kerdensom.averaging.wiener_class_averages`) divides that back out, regularized by a
constant, for which several values are tried.

    python benchmarks/bench_averages.py
"""

import _common
import numpy as np
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.averaging import wiener_class_averages
from sklearn_kerdensom.datasets import _interpolated, _path_projections, make_adk_path

CONSTANTS = (0.01, 0.03, 0.1, 0.3, 1.0, 10.0)


def _correlation(a, b, mask):
    a, b = a[mask] - a[mask].mean(), b[mask] - b[mask].mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def fidelity(averages, truth, counts, mask):
    """Correlation with the truth, weighted by class size and (small classes count as much) not."""
    kept = np.flatnonzero(counts)
    scores = [_correlation(averages[k], truth[k], mask) for k in kept]
    return [float(np.average(scores, weights=counts[kept])), float(np.mean(scores))]


def main():
    info = _common.machine_info()
    _common.print_header("bench_averages: 1000 phase-flipped AdK path particles of 32x32, 7x7 map", info)
    rows, results = [], {}
    for snr in (0.1, 0.05):
        data = make_adk_path(1000, binning=2, snr=snr, random_state=0)
        projections = _interpolated(*_path_projections(2)[:2], data.path_coordinate)
        mask = circular_mask(data.images.shape[1:], 13)
        averager = ClassAverager(make_pipeline(MaskVectorizer(mask), KerDenSOM(random_state=0))).fit(
            data.images
        )
        labels, counts = averager.labels_, averager.counts_
        truth = np.stack(
            [projections[labels == k].mean(axis=0) if counts[k] else projections[0] for k in range(49)]
        )
        results[snr] = {"plain": fidelity(averager.averages_, truth, counts, mask)}
        for constant in CONSTANTS:
            wiener, _ = wiener_class_averages(data.images, labels, data.ctf, data.pixel_size, 49, constant)
            results[snr][f"wiener {constant:g}"] = fidelity(wiener, truth, counts, mask)
        rows.extend([snr, name, *values] for name, values in results[snr].items())
    _common.table(
        ["SNR", "averages", "fidelity (by size)", "fidelity (per class)"], rows, {2: ".3f", 3: ".3f"}
    )
    _common.write_json(
        "bench_averages", {"machine": info, "results": {str(k): v for k, v in results.items()}}
    )


if __name__ == "__main__":
    main()
