"""The entry point every ``stages/*.py`` calls: argument parsing and one-line errors.

User errors (FacegenError) become one line on stderr and exit code 2, no traceback: a traceback
says "bug in facegen", which a missing dataset or a typo in params.yaml is not. So do failures of
the machine rather than the code (OSError: disk full, read-only or vanished folder): outputs are
written atomically, so such a failure leaves the previous files or none, never half a file.
"""
from __future__ import annotations

import argparse
import errno
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from facegen.config import Params, load_params
from facegen.errors import FacegenError


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {message}", file=sys.stderr)


def stage_main(description: str, body: Callable[[Params, argparse.Namespace], None],
               add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.showwarning = _warn_one_line
    try:
        params = load_params(args.params)
        body(params, args)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; rerun the stage to continue (training resumes after its last completed epoch)",
              file=sys.stderr)
        sys.exit(130)


def os_error_message(err: OSError) -> str:
    """One line naming what the system refused and what to do about it."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free disk space, then rerun"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the output folders writable (or run from a checkout you own), then rerun"
    else:
        fix = "check that the path exists and is usable, then rerun"
    return f"{err.strerror or type(err).__name__}{where}: {fix}"


def ensure_writable(*directories: Path) -> None:
    """Fail before hours of work, not after, when an output folder cannot take a file."""
    for directory in directories:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as err:
            raise FacegenError(f"cannot write to {directory}/ ({err.strerror or type(err).__name__}): "
                               "make it writable (or run from a checkout you own), then rerun") from None


def family_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, help="model family (a key of models: in params.yaml)")
