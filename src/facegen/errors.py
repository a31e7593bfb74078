"""User-facing errors: anything raised as a FacegenError is printed as one line, without traceback.

Also how a command ends on the other things a user sees: an interrupt (Ctrl-C, SIGTERM, SIGHUP),
an OSError of the machine, a warning.
"""
import contextlib
import errno
import signal
import sys
import threading
from typing import Iterator


class FacegenError(Exception):
    """A problem the user can fix (bad params, missing data, wrong checkpoint)."""


class DataError(FacegenError):
    """The dataset on disk is missing, partial, corrupt or does not have what params ask for."""


class ConfigError(FacegenError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class CheckpointError(FacegenError):
    """A checkpoint is truncated, from another architecture, or not a facegen checkpoint."""


class TrainingDivergedError(FacegenError):
    """A loss went NaN/inf, or weights about to be saved are not finite: the run produced garbage."""


class TrackingError(FacegenError):
    """An MLflow run or its artifacts cannot be read back (unknown run, moved or deleted artifacts)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it unwinds like Ctrl-C (KeyboardInterrupt).

    Schedulers (Slurm, Kubernetes), ``docker stop`` and ``torchrun`` (to the surviving ranks when one
    fails) stop a process with SIGTERM; a closed terminal sends SIGHUP. Python's default for both is
    to die at once, skipping every ``finally``: the MLflow run stayed RUNNING forever. Raised as an
    interrupt instead, the same code paths as Ctrl-C run: atomic writers remove their temp files,
    the run is marked KILLED, the last completed epoch's state is kept for the rerun.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupted(stop: KeyboardInterrupt) -> str:
    """``interrupted``, naming the signal when it was not Ctrl-C: ``interrupted (SIGTERM)``."""
    return f"interrupted ({stop})" if isinstance(stop, Terminated) else "interrupted"


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (SIGINT 130, SIGTERM 143)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def interrupt_on_termination() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` (see there) in this process's main thread.

    Only where the signal still has its default action (a SIGHUP ignored by ``nohup`` stays ignored),
    and only from the main thread, the one Python delivers signals to. The previous handlers come back
    on leaving, so a caller in the same process (a test, a notebook calling ``cli.main``) keeps its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = [signum for signum in TERMINATING if signal.getsignal(signum) is signal.SIG_DFL]
    for signum in installed:
        signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum in installed:
            signal.signal(signum, signal.SIG_DFL)


@contextlib.contextmanager
def default_termination() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP have their default action again: fork worker processes here.

    A worker inherits its parent's handlers; one that raised :class:`Terminated` would run the
    interpreter's clean-up, inherited mid-fork (locks held by parent threads that do not exist in the
    child), and can hang ``Pool.terminate()`` waiting for it. Resetting the handler in the worker
    itself (a pool initializer) leaves a window: a worker terminated before it ran (seen in the unit
    suite), so the parent forks with the default in place.
    """
    ours = ([signum for signum in TERMINATING if signal.getsignal(signum) is _raise_terminated]
            if threading.current_thread() is threading.main_thread() else [])
    for signum in ours:
        signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum in ours:
            signal.signal(signum, _raise_terminated)


def os_error_message(err: OSError) -> str:
    """One line naming what the system refused, the path, and what to do about it."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space, then rerun"
    elif err.errno == errno.EFBIG:
        fix = "the file size limit (`ulimit -f`) or the filesystem's largest file was reached: raise it, " \
              "or write elsewhere, then rerun"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the output folders writable (or run from a checkout you own, or write elsewhere), then rerun"
    else:
        fix = "check that the path exists and is usable, then rerun"
    return f"{err.strerror or type(err).__name__}{where}: {fix}"


def show_warning_one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` for commands: ``warning: <message>`` on stderr, no source location."""
    print(f"warning: {message}", file=sys.stderr)
