"""Long work (encoding a face: seconds of GAN inversion) in a background thread, with progress to poll.

A page asks for work with a key (the face); the same key while it runs or after it finished returns
the same job, so two tabs picking the same face share one inversion. Threads are daemons: Ctrl-C
stops the server at once instead of waiting for an inversion nobody will look at.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from facegen.errors import FacegenError

KEEP_FINISHED = 64  # finished jobs remembered (their results are small; the faces' latents live in the engine)


@dataclass
class Job:
    id: str
    key: str
    state: str = "running"      # running | done | error
    fraction: float = 0.0       # in [0, 1]
    message: str = "starting"
    result: Any = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def report(self, fraction: float, message: str) -> None:
        self.fraction, self.message = min(max(fraction, 0.0), 1.0), message


class Jobs:
    """Start work by key, look it up by id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def start(self, key: str, work: Callable[[Callable[[float, str], None]], Any]) -> Job:
        """The job for ``key``: a running or finished one, else ``work(report)`` started in a thread.
        A failed job is started afresh (the failure may have been transient)."""
        with self._lock:
            job = self._by_key.get(key)
            if job is not None and job.state != "error":
                return job
            job = Job(str(next(self._ids)), key)
            self._jobs[job.id] = job
            self._by_key[key] = job
            self._prune()
        threading.Thread(target=self._run, args=(job, work), name=f"explore-job-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    @staticmethod
    def _run(job: Job, work: Callable[[Callable[[float, str], None]], Any]) -> None:
        try:
            job.result = work(job.report)
            job.report(1.0, "done")
            job.state = "done"
        except FacegenError as err:
            job.error, job.state = f"error: {err}", "error"
        except Exception as err:  # shown in the page; the server keeps answering
            job.error, job.state = f"error: {type(err).__name__}: {err}", "error"
        finally:
            job.done.set()

    def _prune(self) -> None:
        finished = [j for j in self._jobs.values() if j.state != "running"]
        for job in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[job.id]
            if self._by_key.get(job.key) is job:
                del self._by_key[job.key]
