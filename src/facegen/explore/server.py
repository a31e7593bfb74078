"""Start the explorer: load everything, bind a port, serve until Ctrl-C (or SIGTERM).

The port is bound here (``--port 0``: one the OS picks free) before uvicorn starts, so the printed
URL is the one that answers. Only 127.0.0.1 unless ``--host`` says otherwise, with a warning: the
page has no login, and uploaded photos are served back to whoever can reach it.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

import uvicorn

from facegen import tracking
from facegen.errors import FacegenError
from facegen.explore.app import create_app
from facegen.explore.engine import Explorer
from facegen.models import FAMILIES
from facegen.trained import make_runtime


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); one-line error when it cannot be had."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:  # a host name: resolved by the socket layer
        family = socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise FacegenError(f"cannot listen on {host}:{port} ({err.strerror or err}); "
                           "pick another --port (0: any free one) or --host") from None
    sock.listen(128)
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_ids(args: argparse.Namespace) -> list[str]:
    """``--run-id`` runs and the runs behind ``--model`` registered versions, or with ``--latest-runs``
    every family's newest finished training run."""
    if not args.latest_runs:
        return [*(args.run_id or []), *(tracking.model_version(uri)["run_id"] for uri in args.model or [])]
    runs, problem = tracking.latest_runs("train", list(FAMILIES))
    if problem:
        raise FacegenError(f"--latest-runs: {problem}")
    if not runs:
        raise FacegenError(f"--latest-runs: no finished training run in the MLflow store ({tracking.tracking_uri()})")
    return [run["run_id"] for run in runs.values()]


def serve(args: argparse.Namespace) -> None:
    """``facegen explore``: prints the URL, serves until interrupted, then says it stopped."""
    if (args.run_id or args.model) and args.latest_runs:
        raise FacegenError("give --run-id / --model or --latest-runs, not both")
    sock = bind(args.host, args.port)  # before loading: a taken port fails at once
    try:
        explorer = Explorer(args, make_runtime(args.device), run_ids(args))
        server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning", access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=5))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        if not is_loopback(args.host):
            print(f"warning: --host {args.host} exposes the explorer to every machine that can reach this one: it "
                  "has no login, and photos uploaded to it are shown back to anyone who opens it", file=sys.stderr)
        trained = [c.family for c in explorer.columns.values() if c.model is not None]
        print(f"facegen explore: {', '.join(trained)} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shuts down gracefully on SIGINT, then re-raises it
            pass
    finally:
        sock.close()
    print("facegen explore: stopped", flush=True)
