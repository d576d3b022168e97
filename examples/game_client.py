#!/usr/bin/env python3
"""A player of reactor's game over UDP, with nothing but `socket`.

    reactor serve --game 127.0.0.1:7000 --http 127.0.0.1:8000 &
    python3 examples/game_client.py 127.0.0.1:7000 --seconds 10

It does what the browser page does, in the style of the seeds' socket
examples: the handshake (HELLO, COOKIE, JOIN, WELCOME), then once a tick
an INPUT (this input and the seven before it, with the newest snapshot
received as the ack), and reads the snapshots, applying each delta to the
snapshot it was made against. Once a second it prints the tick, the ping
(from the sequence number the server says it applied), the loss (ticks
that never arrived), and where everyone is. It walks in a square, so a
page open at /game sees it move. docs/GAME.md has the byte layouts.

The last line it prints is a summary (`joined id=... snapshots=...`), for
scripts and tests.
"""

import argparse
import select
import socket
import struct
import sys
import time

VERSION = 1
HELLO, COOKIE, JOIN, WELCOME, INPUT, BYE, REJECT, SNAPSHOT = 1, 2, 3, 4, 5, 6, 7, 0x10
UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8
PAD = 32  # HELLO and JOIN are padded so no answer is bigger than the question


def handshake(sock, server):
    """HELLO until a COOKIE comes, JOIN until a WELCOME does."""
    hello = bytes([HELLO, VERSION]).ljust(PAD, b"\0")
    cookie = None
    for _ in range(20):
        msg = hello if cookie is None else (bytes([JOIN, VERSION]) + cookie).ljust(PAD, b"\0")
        sock.sendto(msg, server)
        ready, _, _ = select.select([sock], [], [], 0.25)
        if not ready:
            continue
        data, _ = sock.recvfrom(2048)
        if data[0] == COOKIE:
            cookie = data[2:10]
        elif data[0] == WELCOME:
            (_, _, pid, token, hz, step, width, height, radius, sub) = struct.unpack(
                "<BBHIBHHHBB", data
            )
            return dict(id=pid, token=token, hz=hz, step=step, width=width,
                        height=height, radius=radius, sub=sub)
        elif data[0] == REJECT:
            sys.exit("refused: " + {1: "the arena is full", 2: "wrong version"}.get(data[1], "?"))
    sys.exit("no answer from %s:%d" % server)


def parse_snapshot(data, ring):
    """(tick, base, ack_seq, you, {id: [x, y, flags, score]}), or None
    when the delta's base is not in `ring` (a dict tick -> entities)."""
    tick, base, ack_seq, you, removed, n = struct.unpack_from("<IIIHBB", data, 1)
    at = 17
    if base == 0:
        ents = {}
        for _ in range(n):
            pid, x, y, flags, score = struct.unpack_from("<HHHBH", data, at)
            ents[pid] = [x, y, flags, score]
            at += 9
        return tick, base, ack_seq, you, ents
    if base not in ring:
        return None
    ents = {k: list(v) for k, v in ring[base].items()}
    for _ in range(removed):
        (pid,) = struct.unpack_from("<H", data, at)
        ents.pop(pid, None)
        at += 2
    for _ in range(n):
        pid, mask = struct.unpack_from("<HB", data, at)
        at += 3
        e = ents.setdefault(pid, [0, 0, 0, 0])
        if mask & 1:  # a small move: dx, dy as signed bytes
            dx, dy = struct.unpack_from("<bb", data, at)
            e[0] += dx
            e[1] += dy
            at += 2
        if mask & 2:  # a position
            e[0], e[1] = struct.unpack_from("<HH", data, at)
            at += 4
        if mask & 4:
            e[2] = data[at]
            at += 1
        if mask & 8:
            (e[3],) = struct.unpack_from("<H", data, at)
            at += 2
    return tick, base, ack_seq, you, ents


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server", help="HOST:PORT of reactor serve --game")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to play")
    ap.add_argument("--quiet", action="store_true", help="only the summary line")
    args = ap.parse_args()
    host, port = args.server.rsplit(":", 1)
    server = (host, int(port))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    me = handshake(sock, server)
    if not args.quiet:
        print("joined as player %(id)d: %(width)dx%(height)d arena, %(hz)d Hz" % me)
    period = 1.0 / me["hz"]
    ring, latest, seq, sent, sent_at = {}, 0, 0, [], {}
    got = first = 0
    ping_ms = None
    moves = [RIGHT] * 30 + [DOWN] * 30 + [LEFT] * 30 + [UP] * 30
    start = next_input = next_report = time.monotonic()
    while time.monotonic() - start < args.seconds:
        now = time.monotonic()
        if now >= next_input:
            seq += 1
            sent.insert(0, moves[seq % len(moves)])
            del sent[8:]
            sent_at[seq] = now
            sock.sendto(struct.pack("<BIIIB", INPUT, me["token"], latest, seq, len(sent))
                        + bytes(sent), server)
            next_input += period
        ready, _, _ = select.select([sock], [], [], max(0.0, next_input - time.monotonic()))
        if ready:
            data, _ = sock.recvfrom(2048)
            if not data or data[0] != SNAPSHOT:
                continue
            snap = parse_snapshot(data, ring)
            if snap is None or snap[0] <= latest:
                continue  # no base, or older than what we have: skip it
            tick, _, ack_seq, _, ents = snap
            ring[tick] = ents
            ring.pop(tick - 64, None)
            first = first or tick
            latest, got = tick, got + 1
            if ack_seq in sent_at:
                ping_ms = (time.monotonic() - sent_at.pop(ack_seq)) * 1000
                for old in [s for s in sent_at if s < ack_seq]:
                    del sent_at[old]
        if not args.quiet and time.monotonic() >= next_report and latest:
            next_report += 1.0
            expected = latest - first + 1
            loss = 100.0 * (expected - got) / expected
            ents = ring[latest]
            where = " ".join(
                "%d%s@%d,%d" % (pid, "*" if e[2] & 1 else "", e[0] // me["sub"], e[1] // me["sub"])
                for pid, e in sorted(ents.items())
            )
            ping = "%.1f ms" % ping_ms if ping_ms is not None else "?"
            print("tick %d  ping %s  loss %.1f%%  players: %s" % (latest, ping, loss, where))
    sock.sendto(struct.pack("<BI", BYE, me["token"]), server)
    seen = sorted(ring[latest]) if latest else []
    print("joined id=%d snapshots=%d last_tick=%d players=%s" % (
        me["id"], got, latest, ",".join(map(str, seen))))


if __name__ == "__main__":
    main()
