"""``kerdensom simulate``: simulated AdK particles written as a RELION or cryoSPARC project holds them."""

import json

from .._output_directory import SUMMARY, manifest_entries
from ._arguments import UsageError
from ._console import _say
from ._outputs import _output_directory, _versions


def _simulate(args):
    from ..datasets import make_adk_path
    from ..datasets._projects import write_cryosparc_project, write_relion_project

    if args.project.exists():
        raise UsageError(f"{args.project} already exists: simulate writes a new project directory")
    args.out, args.overwrite = args.project, False
    with _output_directory(args) as output:
        data = make_adk_path(args.n_particles, phase_flip=False, random_state=args.seed)
        write = write_relion_project if args.format == "relion" else write_cryosparc_project
        particles = write(output.staging, data).relative_to(output.staging)
        summary = {"command": args.argv, "versions": _versions(), **manifest_entries(output.staging)}
        (output.staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    _say(
        args,
        f"wrote {args.project}: {args.n_particles} simulated AdK particles of 64 x 64 px (1.2 Å, SNR 0.1, "
        f"not phase-flipped) along the closed -> open path, in {particles}",
    )
