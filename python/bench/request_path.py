"""The Python face of the request-path benchmark (core/benches/request_path.sh).

``python request_path.py PORT N``: 200 warm-up calls, then N ``client.get`` calls
against the benchmark's server on 127.0.0.1:PORT; the shell script counts the
instructions of two runs with cachegrind and divides their difference by the
difference of N, as it does for the Rust and C roles.
"""

import sys

import authcore


def main() -> None:
    port, n = sys.argv[1], int(sys.argv[2])
    client = authcore.Client.client_credentials(
        f"http://127.0.0.1:{port}/token", "bench", "bench-secret"
    )
    url = f"http://127.0.0.1:{port}/api"
    for i in range(n + 200):
        response = client.get(url)
        if response.status != 200:
            raise SystemExit(f"request {i}: HTTP {response.status}")


if __name__ == "__main__":
    main()
