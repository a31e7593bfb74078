"""A real ``mlflow server`` on loopback for tests: its own SQLite store and artifact root, always stopped."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    root: Path  # holds server.db, artifacts/ and server.log
    proc: subprocess.Popen

    def stop(self) -> None:
        """SIGTERM the server's process group (it forks workers), SIGKILL after 20 s; idempotent."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def mlflow_server(root: Path, *options: str, env: dict[str, str] | None = None,
                  start_timeout: float = 90) -> Iterator[Server]:
    """Start ``python -m mlflow server [options]`` (e.g. ``--app-name basic-auth``, configured through
    ``env``) on a free loopback port, wait until /health answers, stop it at the end."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", *options, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts")],
            env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", root, proc)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"mlflow server did not start within {start_timeout:.0f} s"
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield server
    finally:
        server.stop()
