#!/usr/bin/env python3
"""Memory per idle TLS keep-alive connection: open N TLS connections to
127.0.0.1:PORT, send one HTTP request on each and read its response, keep
them all open, then report the growth of the server's resident memory
(server pid given) per connection. Like ../shared/peers/idle_conns.py, over
TLS (Python's ssl module, trusting CAFILE).

Usage: idle-tls.py PID PORT CAFILE [N]"""
import socket, ssl, sys, time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def main():
    pid, port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    time.sleep(0.3)
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(request)
        s.settimeout(5)
        got = b""
        while b"Hello" not in got and b"\r\n\r\n" not in got[-4:]:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        conns.append(s)
    time.sleep(1.5)
    after = rss_kib(pid)
    print(f"{n} idle TLS connections: server RSS {before} -> {after} KiB, "
          f"{(after - before) * 1024 / n:.0f} bytes/connection")


if __name__ == "__main__":
    main()
