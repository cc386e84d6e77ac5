#!/usr/bin/env python3
"""What one open HTTP connection costs the gateway, apart from any MCP session.

    tests/bench/conn-cost.py PID PORT N PATH

Opens N connections to 127.0.0.1:PORT, sends `GET PATH` on each and keeps them open (an idle
keep-alive connection for /healthz; an open event stream for /agents/<name>/sse, a session that
never initialises), then reads the RSS of process PID: (RSS - baseline) / N. Start the gateway
fresh for each PATH: freed memory stays with the process for a moment and would hide the next
figure. Needs `ulimit -n` above N + 100 for the gateway.
"""
import resource
import socket
import sys
import time

resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
pid, port, n, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit(f"no process {pid}")


base = rss_kib()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    socks.append(s)
time.sleep(1)
for s in socks:  # read what was answered so nothing waits on a full socket buffer
    s.setblocking(False)
    try:
        s.recv(65536)
    except BlockingIOError:
        pass
time.sleep(4)
now = rss_kib()
print(f"{path}: {n} connections, RSS {base} -> {now} KiB: {(now - base) / n:.1f} KiB per connection")
