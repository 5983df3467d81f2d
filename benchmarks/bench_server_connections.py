"""``serve`` under half-open connections: /v1/health latency while strangers hold sockets.

A real ``serve`` child on 127.0.0.1 (no model: nothing but the HTTP side),
started under a stock 1024 soft open-file limit, as most shells give it. The
benchmark opens half-open connections (half a request line and headers, then
silence) in steps and, at each step, times ``/v1/health`` on fresh connections.
Beyond ``--max-connections`` the server closes the oldest waiting connection
for each new one, so the last step measures the shedding path too.

    .venv/bin/python benchmarks/bench_server_connections.py                  # 0..6000, ~30 s
    .venv/bin/python benchmarks/bench_server_connections.py --steps 0 2000 --tries 20

Loopback only; every socket is closed and the server stopped at the end.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def open_half(host: str, port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    return sockets


def health_ms(url: str, tries: int) -> list[float]:
    import requests

    took = []
    for _ in range(tries):
        started = time.perf_counter()
        response = requests.get(f"{url}/v1/health", timeout=30, headers={"Connection": "close"})
        took.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return took


def main() -> int:
    from tests.fixtures.server import ServerProcess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1000, 2000, 4000, 6000])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--server-open-files", type=int, default=1024)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(args.steps) + 512
    if hard < wanted:
        print(f"the hard open-file limit ({hard}) can't hold {max(args.steps)} connections")
        return 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "?",
    )
    print(f"CPU: {cpu}; server soft open-file limit at start {args.server_open_files}")
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess(
            ["--device", "cpu", "--header-timeout", "600"],
            Path(folder) / "serve.log",
            open_files=args.server_open_files,
        )
        host, port = server.url.split("//")[1].split(":")
        held: list[socket.socket] = []
        try:
            for step in sorted(args.steps):
                held += open_half(host, int(port), step - len(held))
                took = health_ms(server.url, args.tries)
                print(
                    f"{step:6d} half-open: health median {statistics.median(took):7.1f} ms, "
                    f"max {max(took):7.1f} ms ({args.tries} tries)"
                )
        finally:
            for sock in held:
                sock.close()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
