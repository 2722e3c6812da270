"""The ``kerdensom`` command: classify RELION particles, or run the demo, from a terminal.

Exit codes: 0 success; 1 a problem with the input or output files or the data;
2 an invalid command line or impossible parameters; 130, 143 and 129
interrupted (Ctrl-C, SIGTERM, SIGHUP). Errors are one line on standard error, without a traceback.
Outputs are written to a staging directory beside ``--out`` and moved into
place at the end, so a failed or interrupted run leaves nothing behind, and
``--out`` never loses a file this tool did not write (:mod:`._output_directory`).

The code lives in one private module per concern; :func:`main` is re-exported here:

- ``_main``: :func:`main`, the subcommand run, signals handled, errors as exit codes;
- ``_arguments``: the command line (argument types, options, the parser, :class:`UsageError`);
- ``_console``: what a run prints (lines, warnings, progress bars);
- ``_fitting``: the KerDenSOM of the command line, its settings checked, and its fit;
- ``_outputs``: the output directory, and the outputs written into it (``summary.json`` last);
- ``_classify``, ``_select``, ``_simulate``, ``_demo``: one subcommand each.
"""

from ._main import main

__all__ = ["main"]
