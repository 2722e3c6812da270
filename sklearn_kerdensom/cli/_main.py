"""The ``kerdensom`` command's entry point: the subcommand run, its signals handled, its errors turned into
one line on standard error and an exit code.
"""

import signal
import sys

from .. import _signals
from ._arguments import UsageError, _parser, _reading_keywords_in_flags
from ._classify import _classify
from ._demo import _demo
from ._select import _select
from ._simulate import _simulate


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the run cleans up after itself."""


def _terminate(signal_number, frame):
    raise Terminated(signal_number)


def main(argv=None):
    """Run the ``kerdensom`` command; returns the exit code."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        # SIGTERM and SIGHUP stop a run as Ctrl-C does, through the same clean-up.
        with _signals.handled(
            [number for number in _signals.STOPPING if number != signal.SIGINT], _terminate
        ):
            commands = {"classify": _classify, "demo": _demo, "select": _select, "simulate": _simulate}
            commands[args.command](args)
    except KeyboardInterrupt:
        print("kerdensom: interrupted", file=sys.stderr)
        return 130
    except Terminated as terminated:
        number = terminated.args[0]
        print(f"kerdensom: terminated ({signal.Signals(number).name})", file=sys.stderr)
        return 128 + number
    except MemoryError:
        print("kerdensom: error: out of memory; try --scratch DIR, or a smaller map", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"kerdensom: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(
            f"kerdensom: error: {error}; install with: pip install 'sklearn-kerdensom[cli]'", file=sys.stderr
        )
        return 1
    except (OSError, ValueError) as error:
        print(f"kerdensom: error: {_reading_keywords_in_flags(str(error))}", file=sys.stderr)
        return 1
    return 0
