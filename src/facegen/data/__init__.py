"""Data: synthetic CelebA-format faces, CelebA layout readers, the prepare cache and datasets."""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import sys
from typing import Any, Callable, Iterable, Iterator

from facegen.errors import default_termination

TaskMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


@contextlib.contextmanager
def task_map(workers: int) -> Iterator[TaskMap]:
    """An ordered ``map(fn, tasks)`` over ``workers`` processes (plain ``map`` for one worker).

    Generation and decoding are CPU-bound chunk jobs; leaving the block stops the workers, also
    after an early ``break``. On Linux workers are forked: they run only numpy / PIL code (never
    torch or OpenMP), so forking is safe even from a parent that has imported torch, while "spawn"
    would re-import pandas & co. in every worker (1-2 s per pool on a small machine).
    """
    if workers <= 1:
        yield map
        return
    context = mp.get_context("fork" if sys.platform == "linux" else "spawn")
    with default_termination():  # the workers are forked here, and terminate() must end them
        pool = context.Pool(workers)
    with pool:
        yield pool.imap
