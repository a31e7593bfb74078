"""`facegen explore` latency: one slider move re-rendering every family's column, against 300 ms.

What a slider move costs once a face is picked: every trained family decodes the face's cached
latent moved along the attribute directions (plus PNG encoding), in the engine
(``Explorer.render``) and through the real HTTP stack (uvicorn + FastAPI in this process, JSON with
PNG data URLs, as the page asks for it). Each request moves a different attribute to a different
strength, as a dragged slider does. Also recorded: start-up (load every model; attribute directions
come from the on-disk cache after the first start, which the result says) and picking a face
(encoding it in every family; the DCGAN inverts it by latent optimisation).

The two paths are timed in interleaved rounds (``benchmarks/timing.py``) so other jobs' load hits
both alike; single-request latencies (median, 90th percentile, max) of the HTTP path are what a user
feels. ``--threads`` caps torch's intra-op threads (the target is for 2 cores).

Run: ``python -m benchmarks.bench_explore`` (the checkout's trained models) ->
benchmarks/results/explore.json. ``--models-dir``/``--prepared-dir``/``--metrics-dir`` point elsewhere;
``--out`` writes somewhere else (e.g. a quick check on tiny models).
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import torch
import uvicorn

from benchmarks.timing import interleaved, machine
from facegen import artifacts
from facegen.config import RuntimeConfig
from facegen.explore.app import create_app
from facegen.explore.engine import Explorer
from facegen.explore.server import bind
from facegen.runtime import setup_runtime
from facegen.trained import EVAL

RESULTS = Path(__file__).resolve().parent / "results" / "explore.json"
TARGET_MS = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", type=Path, default=artifacts.MODELS)
    ap.add_argument("--prepared-dir", type=Path, default=artifacts.PREPARED)
    ap.add_argument("--metrics-dir", type=Path, default=artifacts.METRICS)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the target: 2 cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="slider moves per round and path")
    ap.add_argument("--requests", type=int, default=50, help="single HTTP requests for the latency distribution")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rt = setup_runtime(RuntimeConfig(device="cpu", threads=args.threads))
    options = argparse.Namespace(models_dir=args.models_dir, prepared_dir=args.prepared_dir,
                                 metrics_dir=args.metrics_dir, params=args.params, faces=2, seed=0,
                                 batch_size=EVAL.batch_size, boundary_samples=EVAL.num_samples)
    cached_before = len(list((artifacts.cache_dir() / "directions").glob("*.pt")))
    t0 = time.perf_counter()
    explorer = Explorer(options, rt)
    startup_s = time.perf_counter() - t0
    families = [c.family for c in explorer.columns.values() if c.model is not None]
    t0 = time.perf_counter()
    explorer.encode("test-0")
    pick_s = time.perf_counter() - t0

    attributes, k = explorer.attributes, [0]

    def move() -> dict[str, float]:
        """The next slider position: one attribute to a new strength (a drag across its range)."""
        k[0] += 1
        return {attributes[k[0] % len(attributes)]: ((k[0] * 0.37) % 2.0) - 1.0}

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/render"

    def http() -> None:
        body = json.dumps({"face": "test-0", "edits": move()}).encode()
        req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as res:
            res.read()

    timing = interleaved({"engine": lambda: explorer.render("test-0", move()), "http": http}, 1,
                         warmup=2, rounds=args.rounds, steps=args.steps, baseline="engine")
    latencies = []
    for _ in range(args.requests):
        t0 = time.perf_counter()
        http()
        latencies.append(1000 * (time.perf_counter() - t0))
    server.should_exit = True
    thread.join(10)
    sock.close()
    latencies.sort()
    p90 = latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))]
    result = {
        "what": "one slider move: every trained family's column re-rendered (decode + PNG), engine and HTTP",
        "families": families, "image_size": explorer.size, "attributes": len(attributes),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": machine(),
        "models_dir": str(args.models_dir), "rounds": args.rounds, "steps_per_round": args.steps,
        "startup_s": round(startup_s, 2), "directions_cached_at_start": cached_before > 0,
        "pick_face_s": round(pick_s, 2),
        "render_ms_median": {name: round(1000 / stats["img_per_s_median"], 2) for name, stats in timing.items()},
        "http_latency_ms": {"median": round(statistics.median(latencies), 2), "p90": round(p90, 2),
                            "max": round(latencies[-1], 2), "requests": len(latencies)},
        "target_ms": TARGET_MS, "met": p90 <= TARGET_MS,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
