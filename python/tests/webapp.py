"""A small web application that signs users in with the authorization code flow, as a
real one would: one worker process of several behind a load balancer, with sessions in
a file every worker shares. Run by ``test_webapp.py``; usable on its own::

    AUTHCORE_PENDING_KEY=<64 hex digits> python webapp.py --devserver URL --sessions FILE

``/login`` starts a sign-in and keeps its sealed form in the user's session (a cookie
names the session; the pending sign-in itself never leaves the server); ``/callback``
finishes the sign-in *this session* started — never one a callback link merely names
(login CSRF) — on whichever worker it lands, and answers with the status of an API
call made with the new client. Every worker seals and opens pending sign-ins under the
same key, which comes from the environment (a secrets manager in production), never
from the command line.
"""

from __future__ import annotations

import argparse
import fcntl
import http.server
import json
import os
import secrets
import sys
from typing import Any, Dict, Optional
from urllib.parse import parse_qs, urlsplit

import authcore

CLIENT_ID = "dev-client"
CLIENT_SECRET = "dev-secret"
REDIRECT_URI = "http://127.0.0.1/callback"


class Sessions:
    """Server-side sessions in one JSON file, locked while read or written."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _update(self, change: Any) -> Any:
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            text = f.read()
            data: Dict[str, Dict[str, str]] = json.loads(text) if text else {}
            result = change(data)
            f.seek(0)
            f.truncate()
            json.dump(data, f)
            return result

    def put(self, sid: str, key: str, value: str) -> None:
        self._update(lambda d: d.setdefault(sid, {}).__setitem__(key, value))

    def take(self, sid: str, key: str) -> Any:
        return self._update(lambda d: d.get(sid, {}).pop(key, None))


def make_handler(flow: authcore.AuthorizationCodeFlow, sessions: Sessions, api: str) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def answer(self, status: int, text: str, headers: Optional[Dict[str, str]] = None) -> None:
            body = text.encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            cookie = self.headers.get("Cookie", "")
            sid = cookie.removeprefix("sid=") if cookie.startswith("sid=") else None
            if path == "/login":
                sid = sid or secrets.token_urlsafe(16)
                request = flow.authorization_url()
                sessions.put(sid, "pending", request.pending)
                self.answer(302, "", {"Location": request.url, "Set-Cookie": f"sid={sid}"})
            elif path == "/callback":
                # The binding: the sign-in this session started (used once).
                pending = sessions.take(sid, "pending") if sid else None
                if pending is None:
                    self.answer(400, "no sign-in in progress in this session")
                    return
                try:
                    # What the framework hands over: the path with its query string.
                    client = flow.finish(self.path, pending=pending)
                except authcore.StateMismatchError:
                    self.answer(400, "state mismatch")
                    return
                except authcore.AuthcoreError as e:
                    self.answer(502, f"sign-in failed: {e.kind}")
                    return
                status = client.get(api).status
                self.answer(200, f"signed in worker={os.getpid()} api={status}")
            else:
                self.answer(404, "not found")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devserver", required=True)
    parser.add_argument("--sessions", required=True)
    args = parser.parse_args()
    flow = authcore.AuthorizationCodeFlow(
        args.devserver + "/oauth2/authorize",
        args.devserver + "/oauth2/token",
        CLIENT_ID,
        CLIENT_SECRET,
        REDIRECT_URI,
        scopes="campaigns:read",
        pending_key=bytes.fromhex(os.environ["AUTHCORE_PENDING_KEY"]),
    )
    handler = make_handler(flow, Sessions(args.sessions), args.devserver + "/api/resource")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"PORT={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
