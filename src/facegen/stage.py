"""Shared entry-point plumbing for ``stages/*.py`` and the CLI.

User errors (FacegenError) become one line on stderr and exit code 2, no traceback: a traceback
says "bug in facegen", which a missing dataset or a typo in params.yaml is not.
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
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


def family_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, help="model family (a key of models: in params.yaml)")
