"""Data: synthetic CelebA-format faces, CelebA layout readers, the prepare cache and datasets."""
from __future__ import annotations

import multiprocessing as mp
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def imap_tasks(fn: Callable[[T], R], tasks: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, tasks)`` in order, over ``workers`` processes when more than one.

    Shared by generation and decoding, which are both CPU-bound chunk jobs. "spawn" rather than
    fork: the parent may hold torch / OpenMP threads, which a fork copies in a broken state.
    Close the iterator (or exhaust it) to stop the pool early.
    """
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks)
