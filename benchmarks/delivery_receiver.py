"""The webhook receiver of the delivery figures: a stdlib HTTP/1.1 server, in a process of its own.

Run as ``python -m benchmarks.delivery_receiver SECRET``; it prints the port it listens on
(127.0.0.1) and serves until its standard input closes. Every ``POST`` is read to its end,
timed (``time.monotonic()``, the clock every process of the machine shares), checked against
its Standard Webhooks signature (HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
keyed with the secret) and answered ``200`` with an empty body, over a kept-alive connection.

``GET /count`` answers the number of POSTs received and of bad signatures; ``GET
/wait?n=N&timeout=S`` waits until the N-th POST came and answers when it came (its
monotonic time) and its ``webhook-id``. The benchmark uses them on a connection of its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["main"]


class _Received:
    """What came: the time and webhook-id of each POST, in order, and the bad signatures."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.times: list[float] = []
        self.ids: list[str] = []
        self.bad = 0
        self.cond = threading.Condition()

    def verified(self, headers: Any, body: bytes) -> bool:
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        for signature in headers.get("webhook-signature", "").split(" "):
            version, _, value = signature.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return True
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection carries every request
    received: _Received

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        at = time.monotonic()
        good = self.received.verified(self.headers, body)
        received = self.received
        with received.cond:
            received.times.append(at)
            received.ids.append(self.headers.get("webhook-id", ""))
            if not good:
                received.bad += 1
            received.cond.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        received = self.received
        answer: dict[str, Any]
        with received.cond:
            if url.path == "/wait":
                n = int(query["n"][0])
                timeout = float(query.get("timeout", ["30"])[0])
                received.cond.wait_for(lambda: len(received.times) >= n, timeout)
                if len(received.times) >= n:
                    answer = {"at": received.times[n - 1], "id": received.ids[n - 1]}
                else:
                    answer = {"at": None, "id": None}
            else:
                answer = {}
            answer.update(count=len(received.times), bad=received.bad)
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    secret = args[0]
    encoded = secret.removeprefix("whsec_")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    handler = type("Handler", (_Handler,), {"received": _Received(key)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="receiver", daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe (or ends)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
