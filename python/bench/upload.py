"""Memory of a streamed upload through ``authcore.HttpxAuth`` against the same upload
without it: 300 MiB generated in 1 MiB chunks, posted with httpx to a loopback sink that
reads and discards the body. Each variant runs in a fresh process; its peak resident
memory (``ru_maxrss``) is reported. Prints numbers; asserts nothing.

Run: ``bash tests/python/run.sh bench`` (results in ``python/BENCHMARKS.md``).
"""

from __future__ import annotations

import http.server
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Iterator

MIB = 1024 * 1024
TOTAL_MIB = 300


class Sink(http.server.BaseHTTPRequestHandler):
    """Reads a chunked or sized body and throws it away."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        received = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                while size:
                    part = self.rfile.read(min(size, MIB))
                    received += len(part)
                    size -= len(part)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                part = self.rfile.read(min(left, MIB))
                received += len(part)
                left -= len(part)
        body = json.dumps({"received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def chunks() -> Iterator[bytes]:
    block = b"v" * MIB
    for _ in range(TOTAL_MIB):
        yield block


def upload(url: str, with_auth: bool) -> None:
    import httpx

    import authcore

    auth = authcore.HttpxAuth(authcore.Client.personal_access_token("upload-token")) if with_auth else None
    start = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        r = http.post(url, content=chunks(), auth=auth)
    elapsed = time.perf_counter() - start
    assert r.status_code == 200 and r.json()["received"] == TOTAL_MIB * MIB, r.text
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": peak_kib / 1024, "seconds": elapsed}))


def main() -> None:
    if len(sys.argv) == 3:
        upload(sys.argv[1], sys.argv[2] == "auth")
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/upload"
    results: dict[str, list[dict[str, float]]] = {"without": [], "auth": []}
    try:
        for _ in range(3):
            for variant in ("without", "auth"):
                out = subprocess.run([sys.executable, __file__, url, variant], check=True,
                                     capture_output=True, text=True, timeout=600).stdout
                results[variant].append(json.loads(out))
    finally:
        server.shutdown()
        server.server_close()
    for variant, label in (("without", "httpx alone"), ("auth", "httpx + authcore.HttpxAuth")):
        peaks = ", ".join(f"{r['peak_mib']:.0f}" for r in results[variant])
        times = ", ".join(f"{r['seconds']:.2f}" for r in results[variant])
        print(f"streamed upload of {TOTAL_MIB} MiB, {label}: peak RSS {peaks} MiB; {times} s (3 runs)")


if __name__ == "__main__":
    main()
