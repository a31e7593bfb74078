"""The entry point every ``stages/*.py`` calls: argument parsing and one-line errors.

User errors (FacegenError) become one line on stderr and exit code 2, no traceback: a traceback
says "bug in facegen", which a missing dataset or a typo in params.yaml is not. So do failures of
the machine rather than the code (OSError: disk full, read-only or vanished folder): outputs are
written atomically, so such a failure leaves the previous files or none, never half a file. Ctrl-C
(SIGINT) and SIGTERM/SIGHUP (schedulers, ``docker stop``, torchrun) end the same way: one line, exit
code 128 + the signal's number (130, 143, 129), the MLflow run marked KILLED, resumable state kept.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Callable

from facegen.config import Params, load_params
from facegen.errors import (FacegenError, exit_code, interrupt_on_termination, interrupted, os_error_message,
                            show_warning_one_line)


def stage_main(description: str, body: Callable[[Params, argparse.Namespace], None],
               add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if add_args is not None:
        add_args(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    warnings.showwarning = show_warning_one_line
    try:
        with interrupt_on_termination():
            params = load_params(args.params)
            body(params, args)
    except FacegenError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        print(f"error: {os_error_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM/SIGHUP raised as errors.Terminated
        print(f"error: {interrupted(stop)}; rerun the stage to continue (training resumes after its last completed "
              "epoch)", file=sys.stderr)
        sys.exit(exit_code(stop))


def family_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, help="model family (a key of models: in params.yaml)")
