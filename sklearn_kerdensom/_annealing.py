"""Deterministic annealing of the smoothness regularization (reference §5.5)."""

import numpy as np


def regularization_schedule(reg_initial, reg_final, annealing_steps):
    """The regularization of every annealing step.

    A geometric schedule from ``reg_initial`` to ``reg_final``; a single step uses
    ``reg_final`` (as Xmipp does); ``reg_initial == reg_final == 0`` is kernel
    c-means, one step without regularization.

    Raises
    ------
    ValueError
        For schedules that Xmipp would turn into NaN or that run backwards:
        several steps with ``reg_final == 0`` or with ``reg_initial < reg_final``.

    Returns
    -------
    schedule : list of float
    """
    if reg_initial == 0 and reg_final == 0:
        return [0.0]
    if annealing_steps == 1:
        return [float(reg_final)]
    if reg_final == 0:
        raise ValueError(
            f"reg_final=0 with annealing_steps={annealing_steps}: a geometric schedule cannot "
            "reach 0 (Xmipp returns NaN here). Use reg_initial=0 and reg_final=0 for kernel "
            "c-means, annealing_steps=1, or a positive reg_final."
        )
    if reg_initial < reg_final:
        raise ValueError(
            f"reg_initial={reg_initial} is smaller than reg_final={reg_final}: deterministic "
            "annealing lowers the regularization, so reg_initial must be >= reg_final when "
            f"annealing_steps={annealing_steps} > 1."
        )
    log_initial, log_final = np.log(reg_initial), np.log(reg_final)
    # Xmipp's evaluation order, so the regularizations match its to the last bit.
    return [
        float(np.exp(log_initial - s * (log_initial - log_final) / (annealing_steps - 1)))
        for s in range(annealing_steps)
    ]
