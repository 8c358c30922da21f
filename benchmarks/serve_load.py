"""The service under load: requests per second and p50/p99 latency for single images, with 1 and
2 replicas, against classifying the same image in-process (same preprocessing, same model call).

Starts `fashion-tune serve` on loopback for each replica count, sends a fixed number of requests
from a pool of client threads, and stops it. The replica batches concurrent requests for the
model (fashion_tune.serve.MAX_BATCH_SIZE, BATCH_WAIT_TIMEOUT_S); the settings are printed. The
variants alternate (in-process, 1 replica, 2 replicas, then again, --pairs rounds), so a shared
host's drift falls on each alike; each comparison is the median of the per-round ratios, with
their spread.

    python benchmarks/serve_load.py --model results/<study>/export  [--requests 400] [--clients 8] [--replicas 1 2]
        [--pairs 3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, alternate, paired_ratios

sys.path.insert(0, str(ROOT))


def sample_jpeg() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    image = np.full((300, 300, 3), 255, np.uint8)
    image[60:240, 80:220] = rng.integers(0, 120, (180, 140, 3))  # a dark object on white
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


def summary(latencies: list[float], wall: float) -> dict:
    ms = sorted(1000 * x for x in latencies)
    return {"req_s": len(ms) / wall, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))]}


def shown(figures: dict) -> str:
    return f"{figures['req_s']:8.1f} req/s   p50 {figures['p50_ms']:7.1f} ms   p99 {figures['p99_ms']:7.1f} ms"


def in_process(model_dir: Path, jpeg: bytes, n: int) -> dict:
    from fashion_tune.layout import ExportDir
    from fashion_tune.serve import ModelService

    service = ModelService(ExportDir(Path(model_dir)))
    service.classify_many([("warm-up", jpeg)])  # one upload: decode, one model call, the answer
    latencies, began = [], time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        service.classify_many([("x", jpeg)])
        latencies.append(time.perf_counter() - t)
    return summary(latencies, time.perf_counter() - began)


def over_http(model_dir: Path, jpeg: bytes, replicas: int, n: int, clients: int) -> dict:
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "fashion_tune", "serve", "--model", str(model_dir), "--port",
                                str(port), "--replicas", str(replicas)], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        session = requests.Session()
        for _ in range(20):  # warm up every replica
            session.post(f"{url}/v1/classify", data=jpeg, headers={"Content-Type": "image/jpeg"})

        def one(_):
            t = time.perf_counter()
            answer = requests.post(f"{url}/v1/classify", data=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60)
            answer.raise_for_status()
            return time.perf_counter() - t

        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, range(n)))
        return summary(latencies, time.perf_counter() - began)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an export folder")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts to measure")
    parser.add_argument("--pairs", type=int, default=3,
                        help="rounds over the variants (at least 3 to judge the spread)")
    args = parser.parse_args()
    from fashion_tune import serve

    jpeg, model = sample_jpeg(), Path(args.model)
    print(f"single 300x300 JPEG, {args.requests} requests, {args.clients} concurrent clients, {args.pairs} rounds; "
          f"batching: max_batch_size {serve.MAX_BATCH_SIZE}, batch_wait_timeout_s {serve.BATCH_WAIT_TIMEOUT_S}, "
          f"max_ongoing_requests {serve.MAX_ONGOING_REQUESTS}")
    variants = {"in-process (no HTTP)": lambda: in_process(model, jpeg, args.requests)}
    variants |= {f"HTTP, {r} replica(s)": (lambda r=r: over_http(model, jpeg, r, args.requests, args.clients))
                 for r in args.replicas}
    runs = alternate(variants, args.pairs)
    for name, results in runs.items():
        for figures in results:
            print(f"{name:<22}{shown(figures)}")
    names = list(runs)
    for name in names[1:]:
        print(paired_ratios(f"req/s, {name} / in-process", [r["req_s"] for r in runs[name]],
                            [r["req_s"] for r in runs[names[0]]]))
    if len(names) > 2:
        print(paired_ratios(f"req/s, {names[-1]} / {names[1]}", [r["req_s"] for r in runs[names[-1]]],
                            [r["req_s"] for r in runs[names[1]]]))


if __name__ == "__main__":
    main()
