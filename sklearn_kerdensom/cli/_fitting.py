"""The map of a run: the KerDenSOM of the command line, its settings checked before any work, and its fit."""

import time
import warnings

import numpy as np
from sklearn.pipeline import make_pipeline

from .._topology import check_map_fits_in_memory
from ..averaging import ClassAverager
from ..estimator import KerDenSOM
from ..masking import MaskVectorizer
from ._arguments import UsageError, _in_flags
from ._console import _fit_progress_bar, _say, _warn

# Fewer particles than this per class leave most classes empty.
_PARTICLES_PER_CLASS = 3


def _estimator(args):
    """The KerDenSOM of the command line, its parameters checked before any data is read."""
    som = KerDenSOM(
        args.columns,
        args.rows,
        topology=args.topology,
        smoothness=args.smoothness,
        kernel=args.kernel,
        df=args.df,
        reg_initial=args.reg_initial,
        reg_final=args.reg_final,
        annealing_steps=args.steps,
        objective=args.objective,
        max_iter=args.max_iter,
        tol=args.tol,
        annealing_tol=args.annealing_tol,
        subspace_components=args.subspace,
        n_jobs=args.threads,
        init=args.init,
        standardize=args.standardize,
        random_state=args.seed,
        verbose=0 if args.quiet else 2 if args.verbose else 1,
    )
    try:
        som._validate_params()
        som._annealing_rules()
        check_map_fits_in_memory(args.columns, args.rows, dense=args.objective == "xmipp")
    except ValueError as error:
        raise UsageError(_in_flags(str(error))) from None
    return som


def _fit(images, mask, som, args):
    """The ClassAverager of ``MaskVectorizer(mask) -> som`` fitted on the images, and its fit time."""
    _say(args, f"fitting a {args.columns} x {args.rows} map on {len(images)} images of {images.shape[1:]} px")
    start = time.perf_counter()
    # The fit's warnings (a step stopped at --max-iter) become one line each, like the command's own.
    with warnings.catch_warnings(record=True) as caught, _fit_progress_bar(args):
        warnings.simplefilter("always")
        averager = ClassAverager(make_pipeline(MaskVectorizer(mask), som)).fit(images)
    for warning in caught:
        _warn(args, str(warning.message))
    used = averager.estimator_[-1].subspace_components_
    if used is not None and used < args.subspace:
        _warn(
            args,
            f"--subspace {args.subspace} is more dimensions than the data have ({mask_pixels(mask)} mask "
            f"pixels, {len(images)} particles): the fit ran in a subspace of {used}",
        )
    return averager, time.perf_counter() - start


def mask_pixels(mask):
    """The pixels a mask selects: the features of the fit."""
    return int(np.count_nonzero(mask))


def _check_settings(args, n_particles):
    """Warnings, before any work, for settings that make little sense with this many particles."""
    n_classes = args.columns * args.rows
    if n_particles < _PARTICLES_PER_CLASS * n_classes:
        _warn(
            args,
            f"{n_particles} particles for {n_classes} classes (fewer than {_PARTICLES_PER_CLASS} a class): "
            "most classes will be empty; a smaller map (--columns, --rows) suits them better",
        )
