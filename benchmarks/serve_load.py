"""The service under load: requests per second and p50/p99 latency for single images, with 1 and
2 replicas, against classifying the same image in-process (same preprocessing, same model call).

Starts `fashion-tune serve` on loopback for each replica count, sends a fixed number of requests
from a pool of client threads, and stops it. The replica batches concurrent requests for the
model (fashion_tune.serve.MAX_BATCH_SIZE, BATCH_WAIT_TIMEOUT_S); the settings are printed. The
variants alternate (in-process, 1 replica, 2 replicas, then again, --pairs rounds), so a shared
host's drift falls on each alike; each comparison is the median of the per-round ratios, with
their spread.

    python benchmarks/serve_load.py --model results/<study>/export  [--requests 400] [--clients 8] [--replicas 1 2]
        [--pairs 3] [--before ../before-worktree]

Each HTTP figure carries the CPU milliseconds a request cost each process: the clients (this
script), the Serve proxy, the replica(s), the controller, the service's driver and the rest of Ray.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import os
import socket
import statistics
import subprocess
import sys
import threading
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
    cpu = figures.get("cpu_ms_per_request", {})
    return (f"{figures['req_s']:8.1f} req/s   p50 {figures['p50_ms']:7.1f} ms   p99 {figures['p99_ms']:7.1f} ms"
            + ("   CPU ms a request: " + ", ".join(f"{role} {ms:.1f}" for role, ms in cpu.items()) if cpu else ""))


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


# Ray sets each worker's process title: the role a process plays in a request.
ROLES = {"ServeReplica": "replica", "ProxyActor": "proxy", "ServeController": "controller"}


def cpu_seconds_by_role(service_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of this process (the clients), the service's driver, each
    Serve role's processes and the rest of Ray (raylet, GCS, its other workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[str, float] = {}
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            command = (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (folder / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # a process that ended meanwhile
            continue
        pid = int(folder.name)
        if pid == os.getpid():
            role = "clients"
        elif pid == service_pid:
            role = "serve driver"
        else:
            role = next((r for key, r in ROLES.items() if key in command), "other Ray" if "ray" in command else None)
        if role:
            seconds[role] = seconds.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return seconds


def over_http(model_dir: Path, jpeg: bytes, replicas: int, n: int, clients: int, tree: Path = ROOT) -> dict:
    """The service started from `tree` (its package first on the path, this venv's libraries),
    loaded by `clients` threads, each on its own keep-alive connection."""
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "fashion_tune", "serve", "--model", str(model_dir.resolve()),
                                "--port", str(port), "--replicas", str(replicas)], cwd=tree,
                               env=os.environ | {"PYTHONPATH": str(tree)},  # Ray's workers inherit it
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

        connection = threading.local()

        def one(_):
            if not hasattr(connection, "session"):
                connection.session = requests.Session()
            t = time.perf_counter()
            answer = connection.session.post(f"{url}/v1/classify", data=jpeg, headers={"Content-Type": "image/jpeg"},
                                             timeout=60)
            answer.raise_for_status()
            return time.perf_counter() - t

        cpu_before, began = cpu_seconds_by_role(process.pid), time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, range(n)))
        figures = summary(latencies, time.perf_counter() - began)
        cpu_after = cpu_seconds_by_role(process.pid)
        figures["cpu_ms_per_request"] = {role: 1000 * (cpu_after[role] - cpu_before.get(role, 0.0)) / n
                                         for role in sorted(cpu_after)}
        return figures
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
    parser.add_argument("--before", type=Path,
                        help="another checkout of the project (a git worktree of the commit to compare against): its "
                             "service is measured in turn with this one's, and each replica count compared")
    args = parser.parse_args()
    from fashion_tune import serve

    jpeg, model = sample_jpeg(), Path(args.model)
    print(f"single 300x300 JPEG, {args.requests} requests, {args.clients} concurrent clients (keep-alive), "
          f"{args.pairs} rounds; batching: max_batch_size {serve.MAX_BATCH_SIZE}, batch_wait_timeout_s "
          f"{serve.BATCH_WAIT_TIMEOUT_S}, max_ongoing_requests {serve.MAX_ONGOING_REQUESTS}")
    trees = {"": ROOT} | ({"before, ": args.before.resolve()} if args.before else {})
    variants = {"in-process (no HTTP)": lambda: in_process(model, jpeg, args.requests)}
    variants |= {f"{label}HTTP, {r} replica(s)": (lambda r=r, tree=tree: over_http(model, jpeg, r, args.requests,
                                                                                   args.clients, tree))
                 for r in args.replicas for label, tree in trees.items()}
    runs = alternate(variants, args.pairs)
    for name, results in runs.items():
        for figures in results:
            print(f"{name:<30}{shown(figures)}")
    names = list(runs)
    for name in names[1:]:
        print(paired_ratios(f"req/s, {name} / in-process", [r["req_s"] for r in runs[name]],
                            [r["req_s"] for r in runs[names[0]]]))
    if args.before:
        for r in args.replicas:
            now, then = runs[f"HTTP, {r} replica(s)"], runs[f"before, HTTP, {r} replica(s)"]
            print(paired_ratios(f"req/s, {r} replica(s), this tree / before", [x["req_s"] for x in now],
                                [x["req_s"] for x in then]))
    if len(args.replicas) > 1:
        one, most = f"HTTP, {args.replicas[0]} replica(s)", f"HTTP, {args.replicas[-1]} replica(s)"
        print(paired_ratios(f"req/s, {most} / {one}", [x["req_s"] for x in runs[most]],
                            [x["req_s"] for x in runs[one]]))


if __name__ == "__main__":
    main()
