"""A finished map of a million particles from a memory-mapped stack: time and memory.

Writes a float32 MRC stack of N images of 64 x 64 (default 1 000 000 = 16.4 GB; ``_common.write_mrc_stack``:
with ``--data clusters``, noisy copies of 8 random images; with ``--data path``, noisy copies (SNR 0.1, white
noise) of the 2000 clean images of ``make_adk_path(2000, random_state=0)``, a continuum whose fit takes as
many iterations as a real data set's) to a temporary directory (``--dir``, default the system's), then in a child
process fits ``KerDenSOM(7, 7, subspace_components=K)`` with every other parameter at its default, to
convergence, on the memory-mapped stack (a flattened view of the map: nothing is copied into memory). The
fit reads the stack for the frame (2 passes), the samples' norms, the subspace coordinates, the code vectors'
detail outside the subspace and the labels; every iteration runs in memory, on the N x K coordinates and the
code vectors' N x 49 residual coefficients (``sklearn_kerdensom._subspace``).

Reports the fit's wall time and iterations, the peak anonymous memory of the process (``RssAnon`` sampled
every 20 ms: pages of the mapped file are page cache, not memory the process holds) and ``VmHWM``, and
writes ``results/bench_million.json`` (``bench_million_N.json`` for another number of images).

    python benchmarks/bench_million.py                  # 1 000 000 images, needs ~16.4 GB of disk
    python benchmarks/bench_million.py --quick          # 100 000 images
    python benchmarks/bench_million.py --images 300000 --components 32
    python benchmarks/bench_million.py --data path      # the conformational path: a realistic fit

Writes ``results/bench_million_path.json`` for ``--data path``.
"""

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import _common
import numpy as np

SIZE = 64
PATH_SNR = 0.1


def _sources(data):
    """The images the stack copies, and the standard deviation of the noise added to each copy."""
    if data == "clusters":
        return None, 1.0
    from sklearn_kerdensom.datasets import make_adk_path

    clean = make_adk_path(2000, snr=PATH_SNR, random_state=0).clean_images
    return clean, float(np.sqrt(clean.var(axis=(1, 2), dtype=np.float64).mean() / PATH_SNR))


def _fit_child(path, components, queue):
    """Runs in a fresh process: the fit, its time and its memory."""
    import warnings

    from sklearn_kerdensom import KerDenSOM
    from sklearn_kerdensom.io import read_stack

    stack = read_stack(path)
    X = stack.reshape(len(stack), -1)  # a view of the memory map: nothing read yet
    with _common.peak_rss_anon() as memory:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            som = KerDenSOM(7, 7, subspace_components=components, random_state=0).fit(X)
        seconds = time.perf_counter() - start
    queue.put(
        {
            "seconds": seconds,
            "n_iter": som.n_iter_,
            "step_iterations": [step["n_iter"] for step in som.annealing_history_],
            "converged": som.converged_,
            "warnings": [str(warning.message) for warning in caught],
            "rss_anon_before_fit_mb": memory["baseline"] / 1024,
            "peak_rss_anon_mb": memory["peak"] / 1024,
            "vm_hwm_mb": _common.proc_status_kib("VmHWM") / 1024,
        }
    )


def _result_of(process, queue):
    """The child's report, or a RuntimeError if it died without one (e.g. killed for memory)."""
    import queue as queues

    while True:
        try:
            result = queue.get(timeout=5)
            process.join()
            return result
        except queues.Empty:
            if not process.is_alive():
                raise RuntimeError(f"the fitting process ended with exit code {process.exitcode}") from None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 000 images")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--components", type=int, default=32)
    parser.add_argument("--dir", default=None, help="where to write the temporary stack")
    parser.add_argument(
        "--data", choices=["clusters", "path"], default="clusters", help="what the stack holds (see above)"
    )
    args = parser.parse_args()
    n_images = args.images or (100_000 if args.quick else 1_000_000)
    data_gb = n_images * SIZE * SIZE * 4 / 1e9
    info = _common.machine_info()
    _common.print_header(
        f"bench_million: {n_images} images of 64x64 ({data_gb:.1f} GB, {args.data}), memory-mapped", info
    )
    with tempfile.TemporaryDirectory(prefix="kerdensom-million-", dir=args.dir) as directory:
        path = Path(directory) / "stack.mrcs"
        start = time.perf_counter()
        sources, noise = _sources(args.data)
        _common.write_mrc_stack(path, n_images, SIZE, sources=sources, noise=noise)
        write_seconds = time.perf_counter() - start
        print(f"wrote the stack in {write_seconds:.0f} s", flush=True)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=_fit_child, args=(path, args.components, queue))
        process.start()
        result = _result_of(process, queue)
    rows = [
        ["images", n_images],
        ["data", args.data],
        ["float32 data, GB", round(data_gb, 1)],
        [f"fit seconds (subspace_components={args.components})", round(result["seconds"], 1)],
        ["iterations", result["n_iter"]],
        ["  per annealing step", result["step_iterations"]],
        ["converged", result["converged"]],
        ["peak RssAnon, MB", round(result["peak_rss_anon_mb"])],
        ["  of which before the fit, MB", round(result["rss_anon_before_fit_mb"])],
        ["VmHWM (includes mapped file pages), MB", round(result["vm_hwm_mb"])],
    ]
    _common.table(["", "value"], [[name, str(value)] for name, value in rows])
    name = "bench_million" + ("" if n_images == 1_000_000 else f"_{n_images}")
    _common.write_json(
        name + ("" if args.data == "clusters" else f"_{args.data}"),
        {
            "machine": info,
            "n_images": n_images,
            "data": args.data,
            "components": args.components,
            "write_seconds": write_seconds,
            "fit": result,
        },
    )


if __name__ == "__main__":
    main()
