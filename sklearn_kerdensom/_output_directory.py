"""The output directory of a command-line run: it never loses a file the tool did not write.

A run writes its outputs into a hidden staging directory beside ``--out``,
made when the run starts (so an unwritable location is reported before any
work), and moves it into place when it has finished:

* ``--out`` may not be the current directory or one of its parents, nor be,
  hold or lie inside an input file (STAR file, stacks, mask).
* An existing ``--out`` is replaced only with ``--overwrite``, and only if it
  holds nothing but the files of an earlier run, unchanged: ``summary.json``
  names the tool that wrote it (``"written_by"``) and lists every other file
  with its size and SHA-256 (``"files"``). Both are checked when the run
  starts and again just before the outputs move into place, and the output
  must not have changed in between, so an output that another run finished
  meanwhile is never replaced.
* The replacement survives a kill at any moment: on Linux the new and the old
  directories are exchanged in one atomic ``renameat2(RENAME_EXCHANGE)`` (so
  ``--out`` holds either the complete old or the complete new output), then
  the old files are deleted one by one, by name from the manifest. Where the
  file system has no such exchange (NFS, Lustre, GPFS, other systems) the old
  directory is renamed aside first, then the new one into place; a kill
  between the two leaves the old output in ``.NAME.old.*/output``, which the
  next run with that ``--out`` reports. SIGINT, SIGTERM and SIGHUP wait until
  the outputs are in place.
* A run that fails or is interrupted removes its staging directory and the
  parent directories it made.
"""

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from . import __version__
from ._signals import deferred

SUMMARY = "summary.json"
MANIFEST_KEY = "files"
WRITER_KEY = "written_by"
WRITER = "sklearn-kerdensom"

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2


class OutputRefused(ValueError):
    """``--out`` names a place this run may not write to (an invalid command line)."""


def _renameat2():
    """glibc's ``renameat2``, or None where the C library has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _rename_with_flags(source, target, flags):
    """``renameat2(source, target, flags)``; False when the system cannot (no call, or no file system
    support), so that the caller falls back to plain renames."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(target))


def _rename_no_replace(source, target):
    """Move ``source`` to ``target``, failing with FileExistsError if ``target`` exists."""
    try:
        if _rename_with_flags(source, target, _RENAME_NOREPLACE):
            return
    except OSError as error:
        if error.errno == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        raise
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "exists", str(target))
    # A directory that appears between the check and the rename is replaced only if it is empty.
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        raise


def file_record(path):
    """What the manifest keeps of a file it lists: its size and SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(2**20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def manifest_entries(directory):
    """The ``summary.json`` entries that make ``directory``'s files an output of this tool."""
    # Files in subdirectories (a simulated project's) are listed by their relative path; such a manifest
    # is never one that --overwrite may replace (see _manifest).
    files = {
        path.relative_to(directory).as_posix(): file_record(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != SUMMARY
    }
    return {WRITER_KEY: f"{WRITER} {__version__}", MANIFEST_KEY: files}


def _manifest(directory):
    """The files an earlier run of this tool listed in ``directory``, with their records, or None if
    ``directory`` holds no manifest of this tool."""
    try:
        summary = json.loads((directory / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not str(summary.get(WRITER_KEY, "")).startswith(WRITER):
        return None
    files = summary.get(MANIFEST_KEY)
    if not isinstance(files, dict) or not all(isinstance(name, str) and "/" not in name for name in files):
        return None
    return files


def _foreign_entries(directory):
    """Entries of an existing output directory that are not an earlier run's files as it wrote them."""
    manifest = _manifest(directory)
    entries = sorted(entry.name for entry in directory.iterdir())
    if manifest is None:
        return entries
    foreign = []
    for name in entries:
        path = directory / name
        if name == SUMMARY:
            continue
        if name not in manifest or path.is_symlink() or not path.is_file():
            foreign.append(name)
        elif file_record(path) != manifest[name]:
            foreign.append(f"{name}, changed since kerdensom wrote it")
    return foreign


def _inside(path, directory):
    return path == directory or directory in path.parents


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unusable_out(out, error):
    """The OSError of an output (``--out``) that cannot be made, from the ``error`` of making it or a parent:
    it names the nearest existing directory above ``out`` (or the file in its way), never a temporary
    name."""
    for ancestor in Path(out).parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                return OSError(f"{out} cannot be written: {ancestor} is not a directory")
            return OSError(f"{out} cannot be written in {ancestor}: {error.strerror or error}")
    return OSError(f"{out} cannot be written: {error.strerror or error}")


class OutputDirectory:
    """The output directory ``out`` of a run, its staging directory, and their checks.

    Parameters
    ----------
    out : path-like
    overwrite : bool
        Replace an earlier run's output in ``out``.
    inputs : iterable of path-like
        The run's input files, which ``out`` may not hold.
    """

    def __init__(self, out, overwrite, inputs=()):
        self.out = Path(out)
        self.overwrite = overwrite
        self.inputs = [Path(path) for path in inputs]
        self.staging = None
        self._made_parents = []
        self._seen = None

    def check(self):
        """Refuse, before any work, an ``--out`` that would put a user's file at risk.

        Returns
        -------
        warnings : list of str
            Earlier outputs of ``out`` that an interrupted replacement left aside.
        """
        try:
            out = self.out.resolve()
        except (OSError, RuntimeError) as error:
            raise OutputRefused(f"--out {self.out} cannot be resolved ({error})") from None
        cwd = Path.cwd().resolve()
        if _inside(cwd, out):
            where = "is" if out == cwd else "holds"
            raise OutputRefused(
                f"--out {self.out} {where} the current directory; name a new directory for the outputs "
                "(e.g. --out kerdensom_run)"
            )
        for path in self.inputs:
            resolved = path.resolve()
            if _inside(resolved, out) or _inside(out, resolved):
                raise OutputRefused(
                    f"--out {self.out} holds the input file {path}; name a new directory for the outputs"
                )
        # From here on, the output's place with its parent resolved ("new/../out" is "out", whether "new"
        # exists or not), but not itself: a symbolic link at --out is refused, not followed.
        self.out = self.out.parent.resolve() / self.out.name
        self._check_existing()
        self._seen = _manifest(self.out) if os.path.lexists(self.out) else None
        return [
            f"an interrupted replacement left an earlier output of {self.out} in {left}; move it back or "
            "delete it"
            for left in sorted(out.parent.glob(f".{out.name}.old.*/output"))
        ]

    def _check_existing(self):
        if not os.path.lexists(self.out):
            return
        if self.out.is_symlink() or not self.out.is_dir():
            raise OutputRefused(f"--out {self.out} exists and is not a directory")
        if not self.overwrite:
            raise FileExistsError(
                f"output directory {self.out} already exists; use --overwrite to replace it"
            )
        foreign = _foreign_entries(self.out)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputRefused(
                f"--overwrite refuses to replace {self.out}: it holds files kerdensom did not write "
                f"({shown}); move them away or choose another --out"
            )

    def stage(self):
        """Make the staging directory (and any missing parents of ``out``); returns its path."""
        parent = self.out.parent
        missing = [directory for directory in (parent, *parent.parents) if not directory.exists()]
        try:
            for directory in reversed(missing):
                try:
                    directory.mkdir()
                except FileExistsError:
                    continue  # made meanwhile by someone else: not ours to remove
                self._made_parents.append(directory)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=parent))
        except OSError as error:
            # The error names a random hidden name or a parent; what the user needs is --out and why.
            raise unusable_out(self.out, error) from None
        # mkdtemp makes a private (0700) directory; the outputs get the user's usual permissions.
        self.staging.chmod(0o777 & ~_umask())
        return self.staging

    def publish(self):
        """Move the staged outputs into place, after checking ``out`` again.

        If ``out`` appeared meanwhile and may not be replaced, it is left as it is and the outputs are
        kept under another name (FileExistsError says which).

        Returns
        -------
        warning : str or None
            Set when the outputs are in place but some of an earlier output was left behind.
        """
        appeared = f"output directory {self.out} appeared while this run was working (another run?)"
        with deferred():
            warning = None
            if not os.path.lexists(self.out):
                try:
                    _rename_no_replace(self.staging, self.out)
                except FileExistsError:
                    self._keep_aside(appeared)
            elif not self.overwrite or self._seen is None:
                self._keep_aside(appeared)
            else:
                try:
                    self._check_existing()
                except OutputRefused as problem:
                    self._keep_aside(f"{self.out} can no longer be replaced: {problem}")
                if _manifest(self.out) != self._seen:
                    self._keep_aside(f"{self.out} changed while this run was working (another run?)")
                warning = self._replace()
            self.staging = None
            self._made_parents = []
        return warning

    def _replace(self):
        """Put the staged outputs in place of an earlier output at ``out``; returns a warning or None."""
        staging = self.staging
        if _rename_with_flags(staging, self.out, _RENAME_EXCHANGE):
            # The staging path holds the earlier output now, which discard() must not delete whole.
            self.staging = None
            return self._remove_earlier_output(staging)
        aside = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old.", dir=staging.parent))
        earlier = aside / "output"
        os.replace(self.out, earlier)
        try:
            os.rename(staging, self.out)
        except BaseException:
            os.rename(earlier, self.out)
            aside.rmdir()
            raise
        self.staging = None
        warning = self._remove_earlier_output(earlier)
        if warning is None:
            aside.rmdir()
        return warning

    def _keep_aside(self, reason):
        """Leave ``out`` as it is, and keep this run's outputs under the first free name ``out.2``,
        ``out.3``, ...; raises FileExistsError with ``reason`` and where they are."""
        for number in range(2, 1000):
            kept = self.out.with_name(f"{self.out.name}.{number}")
            try:
                _rename_no_replace(self.staging, kept)
            except FileExistsError:
                continue
            self.staging = None
            raise FileExistsError(f"{reason}; it was left as it is, and this run's outputs are in {kept}")
        raise FileExistsError(f"{reason}; it was left as it is")

    def _remove_earlier_output(self, directory):
        """Delete an earlier run's files, by name from its manifest; anything else stays where it is.

        Returns None when the earlier output is gone, else a warning that says what is left and where.
        """
        kept = []
        for name in sorted({*self._seen, SUMMARY}):
            path = directory / name
            try:
                if path.is_symlink() or path.is_file():
                    path.unlink()
            except OSError as error:
                kept.append(f"{name}: {error.strerror}")
        try:
            directory.rmdir()
        except OSError:
            added = sorted({entry.name for entry in directory.iterdir()} - {*self._seen, SUMMARY})
            reasons = kept + [f"{name}: added while this run was working" for name in added]
            return (
                f"the outputs are in {self.out}, but what could not be removed of the earlier output is in "
                f"{directory} ({'; '.join(reasons) or 'unknown'})"
            )
        return None

    def discard(self):
        """Remove the staging directory and the parents this run made (a failed or interrupted run)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        for directory in reversed(self._made_parents):
            try:
                directory.rmdir()
            except OSError:
                break
        self._made_parents = []
