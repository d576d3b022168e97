#!/usr/bin/env python3
"""WebSocket conformance of `reactor serve` at GET /ws (RFC 6455).

Two independent clients talk to a real server started here on ports the OS
picks: the `websockets` library from PyPI (its own handshake check,
fragmentation, ping, close) and a raw socket for what a library will not
send (bad handshakes, unmasked frames, invalid UTF-8, protocol errors). A
TCP chat member joins too: WebSocket and `nc` members share the chat hub.

    python3 tests/ws_conformance.py --bin target/release/reactor
    python3 tests/ws_conformance.py -k close      # only checks named *close*

Each check asserts something that can fail; the run prints one line per
check and `N passed, N failed`, and exits 1 if any failed. Needs
`websockets` (scripts/ws-conformance.sh installs the pinned version).
"""

import argparse
import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

# The origin the server is started to allow (--ws-origin); another is refused.
ALLOWED_ORIGIN = "http://allowed.test"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 1.3: this key must be answered with this accept value.
RFC_KEY, RFC_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MAX_LINE = 4096  # the server's default --max-line
TIMEOUT = 5.0  # seconds any single wait may take

# Opcodes.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# /help, one WebSocket message per line (src/service/chat.rs, HELP).
HELP = [
    "* commands:",
    "* /nick NAME   take a nick (1-32 of A-Z a-z 0-9 _ -)",
    "* /join ROOM   move to ROOM (created if new)",
    "* /who         list the members of your room",
    "* /rooms       list the rooms and their sizes",
    "* /quit        leave the chat",
    "* //text       send a message that starts with /",
]
WELCOME = re.compile(r"\* welcome to reactor chat, you are (guest\d+) in lobby; /help for commands")


class CheckFailed(AssertionError):
    """A check's expectation was not met."""


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


# ---------------------------------------------------------------------------
# The server under test


# Every server started, so that an early exit (a SIGTERM from `timeout`
# included) still stops them: see main().
STARTED = []


def kill_started():
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Server:
    """`reactor serve` on ports the OS picks; addresses read from its log."""

    def __init__(self, binary, args, tmp):
        self.log_path = os.path.join(tmp, "server.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", *args, "--log-level", "info"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        STARTED.append(self.proc)
        self.addr = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = self.log_text()
            if ": ready" in text:
                for svc, host, port in re.findall(r"(\S+) listening on ([\d.]+):(\d+)", text):
                    self.addr[svc] = (host, int(port))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"server did not start; log:\n{self.log_text()}")

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, grace=10):
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


# ---------------------------------------------------------------------------
# Clients: the library, a raw socket, a TCP chat member


def ws_url(scheme="ws"):
    host, port = SRV.addr["https" if scheme == "wss" else "http"]
    return f"{scheme}://{host}:{port}/ws"


def ws_open(origin=ALLOWED_ORIGIN, **kw):
    """A library client past its welcome line; returns (ws, guest nick)."""
    ws = connect(ws_url(kw.pop("scheme", "ws")), origin=origin, open_timeout=TIMEOUT, legacy=True,
                 close_timeout=TIMEOUT, **kw)
    first = ws.recv(timeout=TIMEOUT)
    m = WELCOME.fullmatch(first)
    expect(m, f"welcome line: got {first!r}")
    return ws, m.group(1)


def recv_until(recv, want, what):
    """Reads messages with `recv()` until one equals `want`; returns those before."""
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = recv(max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if line == want:
            return seen
        seen.append(line)
    raise CheckFailed(f"{what}: no {want!r} within {TIMEOUT}s; got {seen[-8:]!r}")


def member(nick, room, **kw):
    """A library client named `nick` in `room`."""
    ws, _ = ws_open(**kw)
    ws.send(f"/nick {nick}")
    recv_until(lambda t: ws.recv(timeout=t), f"* you are now {nick}", nick)
    ws.send(f"/join {room}")
    got = ws.recv(timeout=TIMEOUT)
    expect(re.fullmatch(rf"\* you joined {room} \(\d+ members\)", got), f"{nick}: /join {room}: got {got!r}")
    return ws


def who(recv, send, room):
    """The set of nicks `/who` lists in `room`."""
    send("/who")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = recv(max(0.01, deadline - time.monotonic()))
        if line.startswith(f"* {room}: "):
            return set(line[len(room) + 4:].split(", "))
    raise CheckFailed(f"no /who reply for {room}")


def lib_recv(ws):
    return lambda t: ws.recv(timeout=t)


def closed_with(ws, code):
    """Waits until the server closes `ws`; asserts the code it sent."""
    try:
        while True:
            ws.recv(timeout=TIMEOUT)
    except ConnectionClosed as e:
        rcvd = e.rcvd
        expect(rcvd is not None, f"connection closed without a close frame (want {code}): {e!r}")
        expect(rcvd.code == code, f"close code {rcvd.code} ({rcvd.reason!r}), want {code}")
    except TimeoutError:
        raise CheckFailed(f"still open after {TIMEOUT}s, want close {code}") from None


def send_then_closed(ws, message, code):
    """Sends `message`; the server must close with `code` (maybe while the
    library is still sending the message's fragments)."""
    try:
        ws.send(message)
    except ConnectionClosed as e:
        expect(e.rcvd is not None and e.rcvd.code == code, f"closed with {e.rcvd}, want {code}")
        return
    closed_with(ws, code)


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin, self.rsv, self.opcode, self.masked, self.payload = fin, rsv, opcode, masked, payload

    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        return f"Frame(fin={self.fin}, op={self.opcode:#x}, {self.payload[:60]!r})"


class Raw:
    """A WebSocket client on a bare socket: sends any bytes, checks every frame."""

    def __init__(self, addr=None):
        self.sock = socket.create_connection(addr or SRV.addr["http"], timeout=TIMEOUT)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError from None
        except ConnectionResetError:
            data = b""
        if not data:
            raise EOFError
        self.buf += data

    def http(self, request):
        """Sends an HTTP request; returns (status, headers lowercased, body)."""
        self.sock.sendall(request)
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = b""
        if status != 101:
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def handshake(self, key=None, origin=ALLOWED_ORIGIN):
        key = key or base64.b64encode(os.urandom(16)).decode()
        extra = f"Origin: {origin}\r\n" if origin else ""
        status, headers, _ = self.http(
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode())
        expect(status == 101, f"raw handshake: status {status}")
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        expect(headers.get("sec-websocket-accept") == want,
               f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}, want {want!r}")
        welcome = self.text()
        expect(WELCOME.fullmatch(welcome), f"raw welcome: {welcome!r}")
        return WELCOME.fullmatch(welcome).group(1)

    def frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0, length=None):
        """The bytes of one client frame (masked unless told)."""
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if not mask:
            return head + payload
        key = os.urandom(4)
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    def send(self, *args, **kw):
        self.sock.sendall(self.frame(*args, **kw))

    def say(self, line):
        self.send(TEXT, line)

    def recv_frame(self, timeout=TIMEOUT):
        """The next server frame; None at EOF. Every server frame must be unmasked."""
        deadline = time.monotonic() + timeout
        try:
            while len(self.buf) < 2:
                self._fill(deadline)
            b0, b1 = self.buf[0], self.buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                while len(self.buf) < 4:
                    self._fill(deadline)
                n, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                while len(self.buf) < 10:
                    self._fill(deadline)
                n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            expect(not b1 & 0x80, "a server frame was masked (RFC 6455 5.1: it must not be)")
            while len(self.buf) < at + n:
                self._fill(deadline)
        except EOFError:
            expect(not self.buf, f"EOF inside a frame: {self.buf[:40]!r}")
            return None
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        expect(not b0 & 0x70, f"a server frame has RSV bits: {b0:#x}")
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, False, payload)

    def text(self, timeout=TIMEOUT):
        """The next text message (pings are answered, skipped)."""
        while True:
            f = self.recv_frame(timeout)
            expect(f is not None, "EOF, want a text message")
            if f.opcode == PING:
                self.send(PONG, f.payload)
                continue
            expect(f.opcode == TEXT and f.fin, f"want a whole text frame, got {f!r}")
            return f.payload.decode()

    def expect_close(self, code):
        """Reads until the server's close frame (skipping text and pings),
        asserts its code, answers it, and asserts the server then closes TCP."""
        deadline = time.monotonic() + TIMEOUT
        seen = []
        while True:
            try:
                f = self.recv_frame(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise CheckFailed(f"no close frame within {TIMEOUT}s (want {code}); got {seen[-5:]}") from None
            expect(f is not None, f"TCP closed without a close frame (want {code}); got {seen[-5:]}")
            if f.opcode == CLOSE:
                break
            seen.append(f)
        got = f.close_code()
        expect(got == code, f"close code {got} (payload {f.payload!r}), want {code}")
        if len(f.payload) > 2:
            f.payload[2:].decode()  # the reason must be UTF-8
        try:
            self.send(CLOSE, f.payload[:2])
        except OSError:
            pass  # the server may already have closed
        self.expect_eof()

    def expect_eof(self):
        deadline = time.monotonic() + TIMEOUT
        try:
            while True:
                self._fill(deadline)
                self.buf = b""
        except EOFError:
            return
        except TimeoutError:
            raise CheckFailed(f"server did not close TCP within {TIMEOUT}s") from None


class Tcp:
    """A member of the line chat (--chat), as `nc` would be."""

    def __init__(self):
        self.sock = socket.create_connection(SRV.addr["chat"], timeout=TIMEOUT)
        self.buf = b""
        first = self.line()
        expect(WELCOME.fullmatch(first), f"tcp welcome: {first!r}")

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def line(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                raise CheckFailed("tcp member: EOF")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        self.sock.close()


def stats():
    host, port = SRV.addr["http"]
    with urllib.request.urlopen(f"http://{host}:{port}/stats", timeout=TIMEOUT) as r:
        return json.load(r)


def raw_request(req, addr=None):
    """One HTTP request on a new connection; (status, headers, body), and
    checks the server closes the connection after a refusal."""
    r = Raw(addr)
    try:
        status, headers, body = r.http(req)
        if status != 101:
            r.expect_eof()
        return status, headers, body
    finally:
        r.close()


def upgrade_request(version="13", key="dGhlIHNhbXBsZSBub25jZQ==", upgrade="websocket",
                    connection="Upgrade", origin=ALLOWED_ORIGIN, method="GET", extra=""):
    lines = [f"{method} /ws HTTP/1.1", "Host: 127.0.0.1"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


# ---------------------------------------------------------------------------
# The checks. Each takes no argument, raises CheckFailed (or anything) to fail.

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


@check
def handshake_library():
    """The library's own handshake (it verifies Sec-WebSocket-Accept), the
    welcome line as one message, and no extension accepted though the
    library offers permessage-deflate."""
    ws, nick = ws_open()
    with ws:
        expect(ws.response.status_code == 101, f"status {ws.response.status_code}")
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        expect(ext is None, f"server accepted an extension it does not implement: {ext!r}")
        expect(nick.startswith("guest"), nick)


@check
def handshake_rfc_example_key():
    """RFC 6455 1.3's key gets exactly RFC 6455 1.3's accept value."""
    r = Raw()
    try:
        status, h, _ = r.http(upgrade_request())
        expect(status == 101, f"status {status}")
        expect(h.get("sec-websocket-accept") == RFC_ACCEPT, f"accept {h.get('sec-websocket-accept')!r}")
        expect(h.get("upgrade", "").lower() == "websocket", f"Upgrade: {h.get('upgrade')!r}")
        expect("upgrade" in h.get("connection", "").lower(), f"Connection: {h.get('connection')!r}")
        expect("sec-websocket-extensions" not in h, "an extension was accepted")
        first = r.text()  # also checks: unmasked, FIN, text
        expect(WELCOME.fullmatch(first), f"welcome {first!r}")
    finally:
        r.close()


@check
def handshake_after_keepalive_request():
    """GET / then GET /ws on one keep-alive connection: 200, then 101."""
    r = Raw()
    try:
        status, _, body = r.http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        expect(status == 200 and body == b"Hello, client!", f"GET /: {status} {body!r}")
        r.handshake()
        r.say("/who")
        got = r.text()
        expect(got.startswith("* lobby: "), f"/who after upgrade: {got!r}")
    finally:
        r.close()


@check
def refuse_bad_version_426():
    status, h, _ = raw_request(upgrade_request(version="8"))
    expect(status == 426, f"status {status}, want 426")
    expect(h.get("sec-websocket-version") == "13", f"Sec-WebSocket-Version {h.get('sec-websocket-version')!r}, want '13'")


@check
def refuse_missing_version():
    status, _, _ = raw_request(upgrade_request(version=None))
    expect(status in (400, 426), f"status {status}, want 400 or 426")


@check
def refuse_missing_key_400():
    status, _, _ = raw_request(upgrade_request(key=None))
    expect(status == 400, f"status {status}, want 400")


@check
def refuse_short_key_400():
    """A key that is not base64 of 16 bytes (here: 15)."""
    status, _, _ = raw_request(upgrade_request(key=base64.b64encode(b"x" * 15).decode()))
    expect(status == 400, f"status {status}, want 400")


@check
def refuse_no_connection_upgrade_400():
    status, _, _ = raw_request(upgrade_request(connection="keep-alive"))
    expect(status == 400, f"status {status}, want 400")


@check
def refuse_no_upgrade_header():
    status, _, _ = raw_request(upgrade_request(upgrade=None))
    expect(status in (400, 426), f"status {status}, want 400 or 426")


@check
def refuse_post_400():
    status, _, _ = raw_request(upgrade_request(method="POST", extra="Content-Length: 0\r\n"))
    expect(status in (400, 405), f"status {status}, want 400 or 405")


@check
def refuse_origin_403():
    status, _, _ = raw_request(upgrade_request(origin="http://evil.test"))
    expect(status == 403, f"status {status}, want 403")
    try:
        connect(ws_url(), origin="http://evil.test", open_timeout=TIMEOUT, legacy=True).close()
        raise CheckFailed("library: a disallowed origin was let in")
    except InvalidStatus as e:
        expect(e.response.status_code == 403, f"library: status {e.response.status_code}")


@check
def allow_listed_origin_and_none():
    """The listed origin (any case) is let in; so is a client with no Origin."""
    for origin in (ALLOWED_ORIGIN, ALLOWED_ORIGIN.upper(), None):
        r = Raw()
        try:
            r.handshake(origin=origin)
        finally:
            r.close()


@check
def one_message_per_line():
    """Each line an nc member would get is one text message, no newline."""
    with ws_open()[0] as ws:
        ws.send("/help")
        got = [ws.recv(timeout=TIMEOUT) for _ in HELP]
        expect(got == HELP, f"/help: got {got!r}")
        ws.send("/nosuch")
        got = ws.recv(timeout=TIMEOUT)
        expect(got == "ERROR unknown command /nosuch (try /help)", f"got {got!r}")


@check
def room_message_library():
    a, b = member("lib_a", "r_lib"), member("lib_b", "r_lib")
    with a, b:
        recv_until(lib_recv(a), "* lib_b joined r_lib", "lib_a")
        a.send("hello from a")
        recv_until(lib_recv(b), "[r_lib] lib_a: hello from a", "lib_b")
        a.send("//slash")
        recv_until(lib_recv(b), "[r_lib] lib_a: /slash", "lib_b")
        nicks = who(lib_recv(a), a.send, "r_lib")
        expect(nicks == {"lib_a", "lib_b"}, f"/who: {nicks}")


@check
def fragmented_library():
    """A message sent as fragments arrives at another member whole."""
    a, b = member("frag_a", "r_frag"), member("frag_b", "r_frag")
    with a, b:
        a.send(["frag", "mented ", "message"])
        recv_until(lib_recv(b), "[r_frag] frag_a: fragmented message", "frag_b")
        a.send(list("one char per fragment"))
        recv_until(lib_recv(b), "[r_frag] frag_a: one char per fragment", "frag_b")


@check
def fragmented_raw_utf8_split_ping_between():
    """Fragments that cut a UTF-8 sequence, with a ping between them: the
    pong comes at once, the message arrives whole."""
    b = member("fragr_b", "r_fragr")
    r = Raw()
    with b:
        try:
            r.handshake()
            r.say("/nick fragr_a")
            expect(r.text() == "* you are now fragr_a", "nick")
            r.say("/join r_fragr")
            expect(r.text().startswith("* you joined r_fragr"), "join")
            whole = "h\xe9llo w\xf6rld".encode()  # é and ö are two bytes each
            r.send(TEXT, whole[:2], fin=False)  # ends inside the é
            r.send(PING, b"between")
            f = r.recv_frame()
            expect(f is not None and f.opcode == PONG and f.payload == b"between", f"want pong 'between', got {f!r}")
            r.send(CONT, whole[2:9], fin=False)  # ends inside the ö
            r.send(CONT, whole[9:], fin=True)
            recv_until(lib_recv(b), "[r_fragr] fragr_a: h\xe9llo w\xf6rld", "fragr_b")
        finally:
            r.close()


@check
def many_frames_one_write():
    """50 messages in one write arrive, all, in order."""
    b = member("burst_b", "r_burst")
    r = Raw()
    with b:
        try:
            r.handshake()
            r.say("/nick burst_a")
            r.say("/join r_burst")
            r.sock.sendall(b"".join(r.frame(TEXT, f"line {i}") for i in range(50)))
            for i in range(50):
                recv_until(lib_recv(b), f"[r_burst] burst_a: line {i}", "burst_b")
        finally:
            r.close()


@check
def frame_byte_by_byte():
    """A 300-byte message (16-bit length) trickled one byte per write."""
    b = member("trickle_b", "r_trickle")
    r = Raw()
    text = "".join(chr(0x61 + i % 26) for i in range(300))
    with b:
        try:
            r.handshake()
            r.say("/nick trickle_a")
            r.say("/join r_trickle")
            r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for byte in r.frame(TEXT, text):
                r.sock.sendall(bytes([byte]))
                time.sleep(0.001)
            recv_until(lib_recv(b), f"[r_trickle] trickle_a: {text}", "trickle_b")
        finally:
            r.close()


@check
def ping_pong():
    with ws_open()[0] as ws:
        pong = ws.ping(b"are you there")
        expect(pong.wait(TIMEOUT), "library ping: no pong")
    r = Raw()
    try:
        r.handshake()
        payload = bytes(range(125))  # the largest control payload
        r.send(PING, payload)
        f = r.recv_frame()
        expect(f is not None and f.opcode == PONG and f.fin, f"want pong, got {f!r}")
        expect(f.payload == payload, "pong payload differs from the ping's")
        r.send(PONG, b"unsolicited")  # must be ignored
        r.say("/who")
        got = r.text()
        expect(got.startswith("* lobby: "), f"after an unsolicited pong: {got!r}")
    finally:
        r.close()


@check
def close_1000_echoed():
    ws, _ = ws_open()
    ws.close(1000, "done")
    expect(ws.close_code == 1000, f"library: server's close code {ws.close_code}, want 1000")
    for code in (1000, 1001, 3000, 4999):
        r = Raw()
        try:
            r.handshake()
            r.send(CLOSE, struct.pack("!H", code) + b"bye")
            f = r.recv_frame()
            while f is not None and f.opcode != CLOSE:
                f = r.recv_frame()
            expect(f is not None, f"close {code}: EOF without a close frame")
            expect(f.close_code() == code, f"close {code}: answered with {f.close_code()} ({f.payload!r})")
            r.expect_eof()
        finally:
            r.close()


@check
def close_empty_answered():
    """A close without a code gets a close back (empty, or 1000)."""
    r = Raw()
    try:
        r.handshake()
        r.send(CLOSE, b"")
        f = r.recv_frame()
        expect(f is not None and f.opcode == CLOSE, f"want a close frame, got {f!r}")
        expect(f.close_code() in (None, 1000), f"answered with {f.close_code()}")
        r.expect_eof()
    finally:
        r.close()


@check
def close_1007_invalid_utf8():
    cases = {
        "invalid bytes": [(TEXT, b"\xff\xfe\xfd", True)],
        "overlong '/'": [(TEXT, b"\xc0\xaf", True)],
        "surrogate": [(TEXT, b"\xed\xa0\x80", True)],
        "invalid in 2nd fragment": [(TEXT, b"fine ", False), (CONT, b"\x80bad", True)],
        "cut sequence at the end": [(TEXT, b"ends in \xc3", True)],
    }
    for name, frames in cases.items():
        r = Raw()
        try:
            r.handshake()
            for op, payload, fin in frames:
                r.send(op, payload, fin=fin)
            try:
                r.expect_close(1007)
            except CheckFailed as e:
                raise CheckFailed(f"{name}: {e}") from None
        finally:
            r.close()


@check
def close_1009_oversized():
    """MAX_LINE bytes pass; one more closes with 1009, whole or fragmented."""
    a, b = member("big_a", "r_big"), member("big_b", "r_big")
    with a, b:
        a.send("x" * MAX_LINE)
        recv_until(lib_recv(b), "[r_big] big_a: " + "x" * MAX_LINE, "big_b")
        send_then_closed(a, "y" * (MAX_LINE + 1), 1009)
        recv_until(lib_recv(b), "* big_a left r_big", "big_b")
    with ws_open()[0] as ws:
        send_then_closed(ws, ["z" * 2000, "z" * 2000, "z" * 2000], 1009)


@check
def close_1003_binary():
    with ws_open()[0] as ws:
        send_then_closed(ws, b"binary bytes", 1003)


@check
def close_1002_unmasked():
    r = Raw()
    try:
        r.handshake()
        r.send(TEXT, "not masked", mask=False)
        r.expect_close(1002)
    finally:
        r.close()


def r_frame(*args, **kw):
    """A frame to build later on a Raw client (its mask key is random)."""
    return lambda r: r.frame(*args, **kw)


@check
def close_1002_protocol_errors():
    cases = {
        "RSV1 without an extension": [r_frame(TEXT, "x", rsv=4)],
        "reserved opcode 3": [r_frame(3, "x")],
        "reserved control opcode 0xB": [r_frame(0xB, "x")],
        "ping over 125 bytes": [r_frame(PING, b"p" * 126)],
        "fragmented ping": [r_frame(PING, "p", fin=False)],
        "continuation with nothing begun": [r_frame(CONT, "x")],
        "text while a message is in flight": [r_frame(TEXT, "a", fin=False), r_frame(TEXT, "b")],
        "close with a 1-byte payload": [r_frame(CLOSE, b"\x03")],
        "close code 1005 (never sent)": [r_frame(CLOSE, struct.pack("!H", 1005))],
        "close code 999": [r_frame(CLOSE, struct.pack("!H", 999))],
    }
    bad = []
    for name, frames in cases.items():
        r = Raw()
        try:
            r.handshake()
            r.sock.sendall(b"".join(f(r) for f in frames))
            r.expect_close(1002)
        except (CheckFailed, OSError) as e:
            bad.append(f"{name}: {e}")
        finally:
            r.close()
    expect(not bad, "; ".join(bad))



@check
def close_reason_not_utf8_1007():
    r = Raw()
    try:
        r.handshake()
        r.send(CLOSE, struct.pack("!H", 1000) + b"\xff")
        r.expect_close(1007)
    finally:
        r.close()


@check
def quit_closes_1000():
    with ws_open()[0] as ws:
        ws.send("/quit")
        got = ws.recv(timeout=TIMEOUT)
        expect(got == "* bye", f"/quit: got {got!r}")
        closed_with(ws, 1000)


@check
def websocket_and_tcp_members():
    """A WebSocket member and a TCP (--chat) member in one room hear each other."""
    t = Tcp()
    try:
        t.send("/nick tcp_m")
        expect(t.line() == "* you are now tcp_m", "tcp nick")
        t.send("/join r_mixed")
        expect(t.line() == "* you joined r_mixed (1 members)", "tcp join")
        w = member("ws_m", "r_mixed")
        with w:
            expect(t.line() == "* ws_m joined r_mixed", "tcp member: no join notice for ws_m")
            w.send("hi from the browser side")
            expect((got := t.line()) == "[r_mixed] ws_m: hi from the browser side", f"tcp member got {got!r}")
            t.send("hi from nc")
            recv_until(lib_recv(w), "[r_mixed] tcp_m: hi from nc", "ws_m")
            nicks = who(lib_recv(w), w.send, "r_mixed")
            expect(nicks == {"tcp_m", "ws_m"}, f"/who: {nicks}")
            t.send("/nick ws_m")
            expect((got := t.line()) == "ERROR nick ws_m is taken", f"nick clash: {got!r}")
        expect((got := t.line()) == "* ws_m left r_mixed", f"tcp member after ws close: {got!r}")
    finally:
        t.close()


@check
def wss_over_tls():
    """wss:// through --https: a TLS member talks to a plain one."""
    ctx = ssl.create_default_context(cafile=CERT)
    a = member("tls_a", "r_tls", scheme="wss", ssl=ctx)
    b = member("tls_b", "r_tls")
    with a, b:
        a.send("over TLS")
        recv_until(lib_recv(b), "[r_tls] tls_a: over TLS", "tls_b")
        b.send("back over TLS")
        recv_until(lib_recv(a), "[r_tls] tls_b: back over TLS", "tls_a")
        pong = a.ping(b"tls")
        expect(pong.wait(TIMEOUT), "wss: no pong")


@check
def stats_gauges():
    """/stats: open_ws follows WebSocket members; the other gauges exist."""
    s = stats()
    for key in ("accepted", "refused", "open", "closed", "bytes_in", "bytes_out", "events", "wakeups",
                "open_greet", "open_echo", "open_chat", "open_unix", "open_http", "open_ws", "rss_kib"):
        expect(isinstance(s.get(key), int), f"/stats has no integer {key!r}")
    expect(s["rss_kib"] > 0, f"rss_kib {s['rss_kib']}")
    base = s["open_ws"]
    conns = [ws_open()[0] for _ in range(3)]
    t = Tcp()
    try:
        s = wait_stats(lambda s: s["open_ws"] == base + 3, "open_ws + 3")
        expect(s["open_chat"] >= 1, f"open_chat {s['open_chat']} with a TCP member connected")
    finally:
        for ws in conns:
            ws.close()
        t.close()
    wait_stats(lambda s: s["open_ws"] == base, f"open_ws back to {base}")


@contextlib.contextmanager
def own_server(*args):
    """A second server with its own flags, standing in for SRV meanwhile;
    it must exit 0 on SIGTERM."""
    global SRV
    main_srv = SRV
    with tempfile.TemporaryDirectory(prefix="ws-own.") as tmp:
        SRV = Server(BIN, ["--http", "127.0.0.1:0", *args], tmp)
        try:
            yield SRV
        finally:
            status = SRV.stop()
            SRV = main_srv
        expect(status == 0, f"server with {args}: exit status {status}")


@check
def server_pings_idle_members():
    """With --ws-ping 300ms: a silent member is pinged; one that answers
    stays; one that never answers is closed."""
    with own_server("--ws-ping", "300ms"):
        if True:
            r = Raw()
            try:
                r.handshake()
                t0 = time.monotonic()
                f = r.recv_frame(timeout=2)
                expect(f is not None and f.opcode == PING, f"want a ping from the server, got {f!r}")
                waited = time.monotonic() - t0
                expect(0.2 < waited < 1.5, f"first ping after {waited:.2f}s, want about 0.3s")
                # Never answer: the server must give up on us, 300 ms after its ping.
                try:
                    while (f := r.recv_frame(timeout=3)) is not None and f.opcode != CLOSE:
                        pass
                except TimeoutError:
                    raise CheckFailed("a member that never answers pings is still open after 3s") from None
                waited = time.monotonic() - t0
                expect(waited < 1.5, f"a member that never answers was closed after {waited:.2f}s, want about 0.6s")
            finally:
                r.close()
            with ws_open()[0] as ws:  # the library answers pings itself
                time.sleep(1.5)
                ws.send("/who")
                got = ws.recv(timeout=TIMEOUT)
                expect(got.startswith("* lobby: "), f"after 1.5s answering pings: {got!r}")


@check
def slow_member_dropped():
    """A WebSocket member that does not read is dropped at the chat output
    limit, like a TCP one: the room hears '(too slow)'."""
    with own_server("--chat-output-hard", "64k", "--chat-output-soft", "32k", "--chat-soft-time", "1s"):
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(TIMEOUT)
        slow.connect(SRV.addr["http"])
        r = Raw.__new__(Raw)
        r.sock, r.buf = slow, b""
        try:
            r.handshake()
            r.say("/nick slowpoke")
            r.say("/join r_slow")
            expect(r.text() == "* you are now slowpoke", "nick")
            expect(r.text().startswith("* you joined r_slow"), "join")
            with member("flood", "r_slow") as fast:
                # Up to 20 MB, far past the 64 KiB limit and what the
                # kernel's socket buffers can hide; slowpoke reads nothing.
                line = "f" * 1000
                for i in range(20000):
                    fast.send(line)
                    if i % 100 == 99 and stats()["slow_dropped"] >= 1:
                        break
                recv_until(lib_recv(fast), "* slowpoke left r_slow (too slow)", "flood")
                s = stats()
                expect(s["slow_dropped"] == 1, f"slow_dropped {s['slow_dropped']}, want 1")
                expect(s["open_ws"] <= 2, f"open_ws {s['open_ws']}")
            # Now slowpoke reads: its backlog, the error as a text message, close 1008.
            last = None
            deadline = time.monotonic() + TIMEOUT
            while (f := r.recv_frame()) is not None and f.opcode == TEXT:
                last = f.payload
                expect(time.monotonic() < deadline, "backlog still arriving after 5s")
            expect(last is not None and last.startswith(b"ERROR too slow"), f"last message {last!r}, want ERROR too slow")
            expect(f is not None and f.opcode == CLOSE and f.close_code() == 1008, f"want close 1008, got {f!r}")
        finally:
            r.close()


@check
def shutdown_says_going_away():
    """SIGTERM: members hear '* server shutting down', then close 1001."""
    with own_server():
        ws, _ = ws_open()
        SRV.proc.send_signal(signal.SIGTERM)
        recv_until(lib_recv(ws), "* server shutting down", "member")
        closed_with(ws, 1001)


def wait_stats(ok, what):
    deadline = time.monotonic() + TIMEOUT
    while True:
        s = stats()
        if ok(s):
            return s
        if time.monotonic() > deadline:
            raise CheckFailed(f"/stats: no {what}: {s}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------


def main():
    global SRV, CERT, BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("BIN", "target/release/reactor"))
    ap.add_argument("-k", default="", help="run only checks whose name contains this")
    args = ap.parse_args()
    BIN = args.bin
    atexit.register(kill_started)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import websockets
    print(f"websockets {websockets.__version__}, server {args.bin}")
    failed, passed = [], 0
    with tempfile.TemporaryDirectory(prefix="ws-conformance.") as tmp:
        subprocess.run([args.bin, "cert", "--out", tmp], check=True, stdout=subprocess.DEVNULL)
        CERT = os.path.join(tmp, "cert.pem")
        SRV = Server(args.bin, [
            "--http", "127.0.0.1:0", "--chat", "127.0.0.1:0", "--https", "127.0.0.1:0",
            "--tls-cert", CERT, "--tls-key", os.path.join(tmp, "key.pem"),
            "--ws-origin", ALLOWED_ORIGIN,
        ], tmp)
        print(f"server pid {SRV.proc.pid}: " + ", ".join(f"{k} {h}:{p}" for k, (h, p) in SRV.addr.items()))
        for fn in CHECKS:
            if args.k not in fn.__name__:
                continue
            t0 = time.monotonic()
            try:
                fn()
                passed += 1
                print(f"PASS {fn.__name__} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
            except Exception as e:  # a check's failure, whatever raised it
                failed.append(fn.__name__)
                kind = "" if isinstance(e, CheckFailed) else f"{type(e).__name__}: "
                print(f"FAIL {fn.__name__}: {kind}{e}", flush=True)
                if not isinstance(e, CheckFailed):
                    traceback.print_exc(limit=3)
            if not SRV.alive():
                failed.append("server alive")
                print(f"FAIL server exited (status {SRV.proc.returncode}) during {fn.__name__}")
                break
        status = SRV.stop()
        log = SRV.log_text()
        for name, ok, why in [
            ("clean_exit", status == 0, f"status {status} after SIGTERM, want 0"),
            ("no_panic", "panicked" not in log, "the server log has a panic"),
        ]:
            if ok:
                passed += 1
                print(f"PASS {name}")
            else:
                failed.append(name)
                print(f"FAIL {name}: {why}")
        if failed:
            print("--- server log (last 40 lines) ---")
            print("\n".join(log.splitlines()[-40:]))
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
