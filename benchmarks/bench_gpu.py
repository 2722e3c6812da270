"""KerDenSOM on a GPU through the Array API, against the device's own matrix products and the CPU fit.

In one run, on one device:

* **matmul rate**: the two products of a pass, ``X @ V.T`` and ``W.T @ X`` (N x 4096 float32 samples,
  K = 49 nodes), timed alone on the device (best of 5): the device's own rate for this work, TFLOP/s;
* **pass**: one E-step over the same samples through the estimator's own passes (best of 5), and its
  ratio to the matmul rate: the fraction of the device's product rate an inner iteration runs at;
* **20 000 x 64^2**: a default ``KerDenSOM()`` fit on ``make_adk_path(20000, snr=0.1)`` (the cached
  data of bench_fit.py and bench_speed.py) on the device and on the CPU (NumPy, every core), with the
  share of identical labels and the largest relative difference of the code vectors;
* **N_large x 64^2** (``--large``, default 1 000 000): a default fit of noisy copies (SNR 0.1) of the
  2000 clean images of ``make_adk_path(2000)`` (as ``bench_million.py --data path``), made on the device;
  the CPU figure for the same data is ``bench_million_path.json``'s, when it was run.

Peak device memory is the allocator's peak (PyTorch) or its pool's size (CuPy).

    python benchmarks/bench_gpu.py [--namespace torch|cupy] [--large N] [--quick]
    python benchmarks/bench_gpu.py --namespace array_api_strict --quick   # the plumbing, on the CPU
    python benchmarks/bench_gpu.py --namespace torch-cpu --quick          # PyTorch's plumbing, on the CPU

Without a GPU (PyTorch with CUDA, or CuPy) it says so and exits 0, measuring nothing. Writes
``results/bench_gpu[_quick].json`` (``bench_gpu_plumbing[_torch_cpu].json`` for array_api_strict and
PyTorch on the CPU, whose figures are not a GPU's).
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import _common
import array_api_compat
import numpy as np
import sklearn

from sklearn_kerdensom import KerDenSOM
from sklearn_kerdensom._array_api import to_numpy

N_FEATURES = 4096
N_NODES = 49
PATH_SNR = 0.1


class Device:
    """One namespace on one device: conversion, synchronisation, memory and random numbers."""

    def __init__(self, name):
        # "torch-cpu" runs PyTorch's code paths on the CPU, to try them where no GPU is lent.
        self.name = "torch" if name == "torch-cpu" else name
        self.gpu = name in ("torch", "cupy")
        if self.name == "torch":
            import torch

            self.xp, self.device = torch, torch.device("cuda" if self.gpu else "cpu")
        elif name == "cupy":
            import cupy

            self.xp, self.device = cupy, None
        else:
            import array_api_strict

            self.xp, self.device = array_api_strict, None

    @property
    def compat(self):
        """array-api-compat's namespace of this device's arrays (the raw module is ``xp``)."""
        return array_api_compat.array_namespace(self.asarray(np.zeros(1)))

    @staticmethod
    def available():
        """The namespace of the GPU here, or None."""
        try:
            import torch

            if torch.cuda.is_available():
                return "torch"
        except ImportError:
            pass
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                return "cupy"
        except (ImportError, RuntimeError):
            pass
        return None

    def describe(self):
        if not self.gpu:
            plumbing = "PyTorch" if self.name == "torch" else "array_api_strict"
            return f"{plumbing} on the CPU (not a GPU: plumbing only)"
        if self.name == "torch":
            import torch

            return torch.cuda.get_device_name(0)
        if self.name == "cupy":
            import cupy

            return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()

    def asarray(self, array):
        if self.name == "torch":
            return self.xp.asarray(array, device=self.device)
        return self.xp.asarray(array)

    def synchronize(self):
        if not self.gpu:
            return
        if self.name == "torch":
            self.xp.cuda.synchronize()
        elif self.name == "cupy":
            self.xp.cuda.Device().synchronize()

    def reset_peak(self):
        if self.gpu and self.name == "torch":
            self.xp.cuda.reset_peak_memory_stats()

    def peak_bytes(self):
        if not self.gpu:
            return None
        if self.name == "torch":
            return int(self.xp.cuda.max_memory_allocated())
        if self.name == "cupy":
            return int(self.xp.get_default_memory_pool().total_bytes())
        return None

    def noisy_copies(self, sources, n_samples, noise, seed=0):
        """``n_samples`` rows ``sources[i % len(sources)] + noise * N(0, 1)``, float32, made on the device
        block by block (no host copy of the stack)."""
        sources = self.asarray(np.asarray(sources, dtype=np.float32))
        compat = self.compat
        stack = compat.empty((n_samples, N_FEATURES), dtype=compat.float32, device=sources.device)
        rng = np.random.default_rng(seed)
        for start in range(0, n_samples, 50_000):
            stop = min(start + 50_000, n_samples)
            index = self.asarray(rng.integers(0, sources.shape[0], stop - start))
            if self.name == "torch":
                generator = self.xp.Generator(device=self.device).manual_seed(seed + start)
                white = self.xp.randn(
                    stop - start, N_FEATURES, device=self.device, dtype=self.xp.float32, generator=generator
                )
            elif self.name == "cupy":
                white = self.xp.random.default_rng(seed + start).standard_normal(
                    (stop - start, N_FEATURES), dtype=self.xp.float32
                )
            else:
                white = self.asarray(rng.standard_normal((stop - start, N_FEATURES), dtype=np.float32))
            stack[start:stop, ...] = compat.take(sources, index, axis=0) + noise * white
        return stack


def best_time(function, device, repeats=5):
    times = []
    for _ in range(repeats):
        device.synchronize()
        start = time.perf_counter()
        function()
        device.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def pass_against_matmul(device, X_device):
    """Seconds of the pass's two products alone, of one E-step pass, and the TFLOP/s of the products."""
    from sklearn_kerdensom import _passes
    from sklearn_kerdensom._frame import fit_frame
    from sklearn_kerdensom._samples import samples_of

    xp = device.compat
    n_samples = X_device.shape[0]
    centers = device.asarray(np.random.default_rng(0).normal(size=(N_NODES, N_FEATURES)).astype(np.float32))
    weights = device.asarray(np.full((n_samples, N_NODES), 1.0 / N_NODES, dtype=np.float32))

    def products():
        distances = xp.matmul(X_device, centers.T)
        sums = xp.matmul(weights.T, X_device)
        return distances, sums

    product_seconds = best_time(products, device)
    flops = 2 * 2 * n_samples * N_FEATURES * N_NODES
    frame = fit_frame(X_device, False)
    samples = samples_of(X_device, frame, np.float32, N_NODES).cache_terms()
    # Code vectors half-way between samples and the centre, in internal coordinates, as _common's.
    internal = frame.to_internal(to_numpy(X_device[:256, ...]), np.float64)
    host = 0.5 * internal[:N_NODES] + 0.5 * frame.centre
    variance = float(np.mean(np.var(internal, axis=0))) * 2.0
    pass_seconds = best_time(
        lambda: _passes.e_step(samples, host, variance, "gaussian", 3.0, np.float64), device
    )
    return {
        "n_samples": n_samples,
        "products_seconds": product_seconds,
        "matmul_tflops": flops / product_seconds / 1e12,
        "pass_seconds": pass_seconds,
        "pass_share_of_matmul_rate": product_seconds / pass_seconds,
    }


def timed_fit(X, device=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device is None:
            start = time.perf_counter()
            model = KerDenSOM(random_state=0).fit(X)
            return model, time.perf_counter() - start
        device.reset_peak()
        device.synchronize()
        start = time.perf_counter()
        with sklearn.config_context(array_api_dispatch=True):
            model = KerDenSOM(random_state=0).fit(X)
        device.synchronize()
        return model, time.perf_counter() - start


def compare_with_cpu(device, n_samples):
    X, data_info = _common.load_adk_path(n_samples)
    cpu, cpu_seconds = timed_fit(X)
    gpu, gpu_seconds = timed_fit(device.asarray(X), device)
    centers = to_numpy(gpu.cluster_centers_).astype(np.float64)
    scale = np.abs(cpu.cluster_centers_).max()
    return {
        "n_samples": n_samples,
        "data": data_info,
        "cpu_seconds": cpu_seconds,
        "cpu_iterations": cpu.n_iter_,
        "device_seconds": gpu_seconds,
        "device_iterations": gpu.n_iter_,
        "speedup": cpu_seconds / gpu_seconds,
        "label_agreement": float(np.mean(to_numpy(gpu.labels_) == cpu.labels_)),
        "centers_max_relative_difference": float(np.abs(centers - cpu.cluster_centers_).max() / scale),
        "peak_device_mib": (device.peak_bytes() or 0) / _common.MIB,
    }


def large_fit(device, n_samples):
    from sklearn_kerdensom.datasets import make_adk_path

    clean = make_adk_path(2000, snr=PATH_SNR, random_state=0).clean_images
    noise = float(np.sqrt(clean.var(axis=(1, 2), dtype=np.float64).mean() / PATH_SNR))
    X_device = device.noisy_copies(clean.reshape(len(clean), -1), n_samples, noise)
    rate = pass_against_matmul(device, X_device)
    model, seconds = timed_fit(X_device, device)
    cpu_reference = _common.RESULTS / "bench_million_path.json"
    return {
        "n_samples": n_samples,
        "rate": rate,
        "device_seconds": seconds,
        "device_iterations": model.n_iter_,
        "seconds_per_iteration": seconds / model.n_iter_,
        "peak_device_mib": (device.peak_bytes() or 0) / _common.MIB,
        "cpu_reference": str(cpu_reference) if cpu_reference.exists() else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--namespace", choices=["torch", "cupy", "array_api_strict", "torch-cpu"], default=None
    )
    parser.add_argument("--large", type=int, default=1_000_000, help="images of the large fit")
    parser.add_argument("--quick", action="store_true", help="2000 and 20 000 images instead")
    args = parser.parse_args()

    name = args.namespace or Device.available()
    if name is None or (name in ("torch", "cupy") and Device.available() != name):
        print(f"no GPU here for {name or 'PyTorch with CUDA or CuPy'}: nothing measured.")
        return
    device = Device(name)
    info = _common.machine_info()
    _common.print_header(f"KerDenSOM on {device.describe()}", info)
    n_compare, n_large = (2000, 20_000) if args.quick else (20_000, args.large)

    comparison = compare_with_cpu(device, n_compare)
    print(
        f"{n_compare} x 64^2, default fit: CPU {comparison['cpu_seconds']:.1f} s "
        f"({comparison['cpu_iterations']} iterations), device {comparison['device_seconds']:.1f} s "
        f"({comparison['device_iterations']}): {comparison['speedup']:.1f}x; labels agree "
        f"{comparison['label_agreement']:.4f}, code vectors within {comparison['centers_max_relative_difference']:.2e}"
    )
    large = large_fit(device, n_large)
    rate = large["rate"]
    print(
        f"{n_large} x 64^2: products {rate['products_seconds'] * 1e3:.1f} ms ({rate['matmul_tflops']:.1f} "
        f"TFLOP/s), pass {rate['pass_seconds'] * 1e3:.1f} ms = {rate['pass_share_of_matmul_rate']:.2f} of "
        f"the matmul rate; default fit {large['device_seconds']:.1f} s ({large['device_iterations']} "
        f"iterations), peak device memory {large['peak_device_mib']:.0f} MiB"
    )
    plumbing = {"array_api_strict": "_plumbing", "torch-cpu": "_plumbing_torch_cpu"}
    suffix = plumbing.get(name, "_quick" if args.quick else "")
    _common.write_json(
        f"bench_gpu{suffix}",
        {"machine": info, "device": device.describe(), "comparison": comparison, "large": large},
    )


if __name__ == "__main__":
    main()
