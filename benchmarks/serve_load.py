"""Load test of transformer-serve: throughput and latency with dynamic batching on and off.

    python benchmarks/serve_load.py --ckpt RUN_DIR_OR_CKPT [--clients 16] [--seconds 20] [--texts 1]

For each setting (max_batch_size 32, then 1 = batching off) the script starts scripts/serve.py in a subprocess on a
free loopback port, runs --clients closed-loop clients (each sends a request, waits for its answer, sends the
next) for --warmup seconds, not counted, then for --seconds, and prints one markdown table: requests/s, texts/s,
p50 and p99 latency, failed requests (any status but 200, or a broken connection), and the mean number of requests
per model batch (from GET /info). Requests cycle through a few built-in English sentences (or --input's lines).
The server's model threads follow OMP_NUM_THREADS, as for any torch process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "A man is riding a bicycle down the street.",
    "Two dogs play in the snow.",
    "The film was a delight from start to finish.",
    "I would not watch it again, it was far too long.",
    "A group of children are sitting on the grass in the park.",
    "The meeting is moved to Thursday at ten.",
    "A woman in a red coat waits for the bus.",
    "Dull characters and a plot that goes nowhere.",
]


class Server:
    """scripts/serve.py in a subprocess on a free loopback port, read from its startup line."""

    def __init__(self, ckpt: str, overrides: list[str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "serve.py"), f"ckpt={ckpt}", "port=0", *overrides],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=log_path.parent,
            )
        self.port = self.wait_for_port()

    def wait_for_port(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(r"at http://127\.0\.0\.1:(\d+) ", self.log_path.read_text())
            if found:
                return int(found.group(1))
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the server did not start:\n{self.log_path.read_text()[-3000:]}")

    def get(self, path: str) -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def client(port: int, bodies: list[bytes], stop_at: float, records: list[tuple[float, float, bool]]) -> None:
    """A closed-loop client on one kept-alive connection: (start, latency, ok) for each request it sends."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = 0
    while time.monotonic() < stop_at:
        start = time.monotonic()
        try:
            connection.request("POST", "/predict", body=bodies[i % len(bodies)])
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            connection.close()  # reconnects on the next request
            ok = False
        records.append((start, time.monotonic() - start, ok))
        i += 1
    connection.close()


def load(server: Server, bodies: list[bytes], clients: int, warmup: float, seconds: float) -> dict[str, float]:
    """Run the clients; figures of the requests started after the warm-up."""
    records: list[tuple[float, float, bool]] = []
    begin = time.monotonic()
    measured_from, stop_at = begin + warmup, begin + warmup + seconds
    stats_before: dict = {}
    timer = threading.Timer(warmup, lambda: stats_before.update(server.get("/info")["stats"]))
    threads = [
        threading.Thread(target=client, args=(server.port, bodies[c:] + bodies[:c], stop_at, records))
        for c in range(clients)
    ]
    timer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timer.join()
    stats_after = server.get("/info")["stats"]
    measured = [(latency, ok) for start, latency, ok in records if start >= measured_from]
    latencies = np.array([latency for latency, ok in measured if ok]) * 1000
    batches = stats_after["batches"] - stats_before["batches"]
    return {
        "requests/s": len(latencies) / seconds,
        "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "failed": sum(not ok for _, ok in measured),
        "mean batch": (stats_after["requests"] - stats_before["requests"]) / max(batches, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a fine-tuned checkpoint or run directory")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per setting")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring")
    parser.add_argument("--texts", type=int, default=1, help="texts per request (1: a string, more: a list)")
    parser.add_argument("--input", help="a text file: its lines are the requests' texts")
    parser.add_argument(
        "--decoding", default="{}", help="JSON decoding options of every request, e.g. '{\"beam_size\": 1}'"
    )
    parser.add_argument("--batch-timeout", type=float, default=0.01, help="the server's batch_timeout")
    args = parser.parse_args()

    sentences = Path(args.input).read_text().splitlines() if args.input else SENTENCES
    sentences = [s for s in sentences if s.strip()]
    decoding = json.loads(args.decoding)
    bodies = []
    for i in range(len(sentences)):
        texts = [sentences[(i + j) % len(sentences)] for j in range(args.texts)]
        body = {"text": texts[0] if args.texts == 1 else texts, **({"decoding": decoding} if decoding else {})}
        bodies.append(json.dumps(body).encode())

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, size in (("on", 32), ("off", 1)):
            server = Server(args.ckpt, [f"max_batch_size={size}", f"batch_timeout={args.batch_timeout}"],
                            Path(folder) / f"serve_{size}.log")  # fmt: skip
            try:
                figures = load(server, bodies, args.clients, args.warmup, args.seconds)
                task = server.get("/info")["task"]
            finally:
                server.stop()
            rows.append((f"{label} (max_batch_size={size})", figures))

    print(f"{args.ckpt} ({task}): {args.clients} clients, {args.seconds:g} s per setting, {args.texts} text(s) per "
          f"request, decoding {decoding or 'defaults'}, batch_timeout {args.batch_timeout:g} s, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n")  # fmt: skip
    print("| batching | requests/s | texts/s | p50 ms | p99 ms | failed | mean batch (requests) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, f in rows:
        print(f"| {label} | {f['requests/s']:.1f} | {f['requests/s'] * args.texts:.1f} | {f['p50']:.0f} | "
              f"{f['p99']:.0f} | {f['failed']} | {f['mean batch']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
