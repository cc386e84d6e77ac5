#!/usr/bin/env python3
"""An OTLP/HTTP sink for benchmarks (not part of the test suite): answers every POST (e.g.
/v1/traces) with 200 and an empty protobuf body, and counts requests and bytes, so that a
gateway with `tests/bench/otel-on.toml` exports as it would to a collector.

    python3 tests/bench/otlp-sink.py [PORT]      # default 4318; Ctrl-C prints the counts
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS = {"requests": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        COUNTS["requests"] += 1
        COUNTS["bytes"] += n
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print(COUNTS, flush=True)
