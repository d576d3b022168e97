//! Driving one connection: do everything its readiness allows, then move
//! its closing along. Every pitfall of edge-triggered I/O on a stream is
//! handled here, where it happens.

use std::io::{self, ErrorKind};

use log::{debug, info, trace};
use mio::Token;

use crate::buf::Buffer;
use crate::config::Limits;
use crate::service::chat::Leave;
use crate::service::{Service, Verdict, echo, greet, ws};
use crate::timer::{Millis, Timers};
use crate::transport::Transport;

use super::accept::{self, AcceptError, Accepted, FULL_LINE, classify, refuse};
use super::conn::{Conn, Phase, is_disconnect};
use super::http::{HTTP_INPUT_CAP, http_busy, http_deadline, more_after_eof};
use super::outbox::ConnOutbox;
use super::udp::UdpTurn;
use super::{Reactor, Slot};

/// The line a chat member gets when it is dropped for not reading.
const TOO_SLOW_LINE: &[u8] = b"ERROR too slow: output limit reached, disconnecting\n";

/// Moves `conn`'s deadline to `when` (0: none). Later deadlines need no
/// heap work (the entry re-arms itself lazily); an earlier one, or the
/// first one, needs an entry of its own.
pub(super) fn rearm(timers: &mut Timers, key: usize, conn: &mut Conn, when: Millis) {
    if when != 0 && (conn.deadline == 0 || when < conn.deadline) {
        timers.push(when, key, conn.id);
    }
    conn.deadline = when;
}

impl Reactor {
    /// Does all the work connection `key`'s readiness allows: write what is
    /// queued, read and answer, write the answers, then advance closing.
    pub(super) fn drive(&mut self, key: usize) {
        let http = matches!(self.slab.get(key), Some(Slot::Conn(c)) if c.service == Service::Http);
        self.moved = false;
        let step = self
            .flush_conn(key)
            .and_then(|()| if http { self.http_work(key) } else { Ok(()) })
            .and_then(|()| self.read_conn(key))
            .and_then(|()| if http { self.http_work(key) } else { Ok(()) })
            .and_then(|()| self.flush_conn(key));
        // Progress (bytes moved, requests answered) moves the deadline:
        // once per drive, on the state the steps left, not once per step.
        let moved = std::mem::take(&mut self.moved);
        match step {
            Ok(()) if moved => {
                self.refresh_deadline(key);
                self.settle(key);
            }
            Ok(()) => self.settle(key),
            Err(e) => return self.fail(key, e),
        }
        self.moved = false;
        // Input still waiting that the connection can take now (room was
        // made after the read, e.g. HTTP answered its buffered requests):
        // no new edge will announce it, so come back next turn.
        if let Some(Slot::Conn(c)) = self.slab.get(key)
            && c.readable
            && c.phase != Phase::Closed
            && Self::wants_input(c, &self.limits)
        {
            self.defer(key);
        }
    }

    /// Writes queued output while the socket takes it; refreshes the
    /// deadline on progress.
    fn flush_conn(&mut self, key: usize) -> io::Result<()> {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return Ok(());
        };
        if c.phase == Phase::Closed || c.pending() == 0 {
            return Ok(());
        }
        let cap = self.limits.echo_output_cap;
        let was_paused = c.pending() >= cap;
        let n = c.flush(&mut self.pool)?;
        if n > 0 {
            trace!("conn {}: wrote {n} bytes, {} pending", c.id, c.pending());
            self.stats.bytes_out += n as u64;
            self.moved = true;
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return Ok(());
            };
            // Echo paused at its output cap may read again now: its input
            // is still waiting (readiness remembered), but no new edge will
            // come for it, so put it on the ready list.
            if was_paused && c.pending() < cap && c.readable && c.is_serving() {
                self.defer(key);
            }
        }
        Ok(())
    }

    /// Moves connection `key`'s deadline after progress: the linger while
    /// closing; for HTTP, the keep-alive timeout between requests, the send
    /// timeout (the idle timeout) while a response goes out, and the header
    /// deadline left as it is while a request is arriving; for the others,
    /// the idle timeout.
    pub(super) fn refresh_deadline(&mut self, key: usize) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return;
        };
        let when = match c.phase {
            Phase::Flushing => self.clock.at(self.limits.linger),
            Phase::Lingering | Phase::Closed => return,
            Phase::Open | Phase::Draining if c.service == Service::Http => {
                http_deadline(c, &self.clock, &self.limits)
            }
            // A sign of life: no ping is owed; the next one is due later.
            Phase::Open | Phase::Draining if c.service == Service::Ws => {
                c.pinged = false;
                self.clock.after(self.limits.ws_ping)
            }
            Phase::Open | Phase::Draining => self.clock.after(self.limits.idle_timeout),
        };
        rearm(&mut self.timers, key, c, when);
    }

    /// True if connection `c` should take more input now.
    fn wants_input(c: &Conn, limits: &Limits) -> bool {
        match c.phase {
            Phase::Open | Phase::Draining => match c.service {
                // Backpressure: a client that does not read its echo stops
                // being read; the kernel's window then stops the client.
                Service::Echo | Service::Unix => {
                    echo::wants_input(c.pending(), limits.echo_output_cap)
                }
                // Requests buffered ahead are bounded; so is the output a
                // client that pipelines without reading can make us hold.
                Service::Http => {
                    c.input.as_ref().map_or(0, |b| b.len()) < HTTP_INPUT_CAP
                        && c.pending() < limits.echo_output_cap
                }
                _ => true,
            },
            // Lingering reads only to discard, so the close sends FIN, not RST.
            Phase::Lingering => true,
            Phase::Flushing | Phase::Closed => false,
        }
    }

    /// Reads until `WouldBlock`, a short read, EOF, backpressure or the
    /// per-turn budget (fairness: then it goes on the ready list).
    fn read_conn(&mut self, key: usize) -> io::Result<()> {
        let mut budget = self.limits.read_budget;
        loop {
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return Ok(());
            };
            if !c.readable || !Self::wants_input(c, &self.limits) {
                return Ok(());
            }
            if budget == 0 {
                // One busy client must not starve the others: come back to
                // it after everyone else has had this turn's events.
                self.defer(key);
                return Ok(());
            }
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return Ok(());
            };
            let mut buf = c.input.take().unwrap_or_else(|| self.pool.get());
            let was_sending = c.transport.can_send();
            let got = c
                .transport
                .read_into(&mut buf, &mut self.pool, c.peer_closed);
            if !was_sending && c.transport.can_send() {
                // TLS handshake done: the handshake's deadline gives way to
                // the service's own.
                trace!("conn {}: TLS established", c.id);
                self.moved = true;
            }
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                self.pool.put(buf);
                return Ok(());
            };
            match got.map(|g| (g.n, g.drained)) {
                Ok((0, _)) => {
                    // FIN (or TLS close_notify): the client will send no
                    // more (it may still read).
                    c.readable = false;
                    c.read_eof = true;
                    c.input = Some(buf);
                    self.pool.release_if_empty(&mut c.input);
                    trace!("conn {}: end of input", c.id);
                    self.on_eof(key);
                    return Ok(());
                }
                Ok((n, drained)) => {
                    // Drained: a plain read that did not fill the room
                    // (epoll(7)), unless the event also said the peer closed
                    // (data and FIN in one event: no new edge would announce
                    // the FIN); or TLS with nothing left in user space. Skip
                    // the read that would only say WouldBlock; a new edge
                    // comes when more data arrives.
                    if drained {
                        c.readable = false;
                    }
                    trace!("conn {}: read {n} bytes", c.id);
                    self.stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                    self.on_input(key, buf);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.readable = false;
                    c.input = Some(buf);
                    self.pool.release_if_empty(&mut c.input);
                    return Ok(());
                }
                Err(e) => {
                    c.input = Some(buf);
                    self.pool.release_if_empty(&mut c.input);
                    if e.kind() != ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Hands bytes just read to the connection's service.
    fn on_input(&mut self, key: usize, buf: Box<Buffer>) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            self.pool.put(buf);
            return;
        };
        if !c.is_serving() {
            // Greet and lingering connections read only to discard.
            self.pool.put(buf);
            return;
        }
        match c.service {
            Service::Echo | Service::Unix => {
                // The bytes in are the bytes out: move the buffer to the
                // output queue (no copy if it was empty) and write now.
                c.queue_buf(buf, &mut self.pool);
                if let Err(e) = self.flush_conn(key) {
                    self.fail(key, e);
                }
            }
            Service::Chat => self.chat_input(key, buf),
            Service::Ws => self.ws_input(key, buf),
            Service::Http => {
                c.input = Some(buf);
                self.http_process(key);
            }
            // (TLS listeners' names never label a connection: see `admit`.)
            Service::Greet | Service::Udp | Service::Https | Service::TlsEcho => self.pool.put(buf),
        }
        self.moved = true;
    }

    /// Feeds chat input to the hub; keeps a trailing partial line.
    fn chat_input(&mut self, key: usize, mut buf: Box<Buffer>) {
        let (used, verdict) = self.chat.input(key, buf.data(), &mut outbox!(self));
        buf.consume(used);
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
            c.input = Some(buf);
            self.pool.release_if_empty(&mut c.input);
        } else {
            self.pool.put(buf);
        }
        if verdict == Verdict::Close {
            self.begin_close(key);
        }
        self.drop_too_slow();
    }

    /// The client sent FIN.
    fn on_eof(&mut self, key: usize) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return;
        };
        match c.phase {
            // We were only waiting for this: the close is clean.
            Phase::Lingering => self.close(key, Leave::Closed),
            // Half-close: echo sends what it still has, then closes; a chat
            // member who hung up leaves the room now.
            _ => match c.service {
                Service::Echo | Service::Unix => {
                    if echo::on_eof() == Verdict::Close {
                        self.begin_close(key);
                    }
                }
                Service::Chat | Service::Ws => {
                    self.chat.disconnect(key, Leave::Closed, &mut outbox!(self));
                    self.drop_too_slow();
                    self.begin_close(key);
                }
                // HTTP answers the whole requests already buffered (settle
                // closes once nothing more can be answered).
                Service::Http => self.http_process(key),
                Service::Greet | Service::Udp | Service::Https | Service::TlsEcho => {
                    self.begin_close(key)
                }
            },
        }
    }

    /// Stop reading; send what is queued, then close (lingering).
    pub(super) fn begin_close(&mut self, key: usize) {
        if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
            && c.is_serving()
        {
            c.phase = Phase::Flushing;
            let when = self.clock.at(self.limits.linger);
            rearm(&mut self.timers, key, c, when);
        }
    }

    /// Advances a closing connection as far as it can go now.
    fn settle(&mut self, key: usize) {
        loop {
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                return;
            };
            match c.phase {
                Phase::Open if c.read_eof && c.service == Service::Http && !http_busy(c) => {
                    if more_after_eof(c, &self.http_cfg) {
                        return self.defer(key); // answer them next turn
                    }
                    self.begin_close(key);
                }
                Phase::Draining if !c.readable && !http_busy(c) && !c.queued => {
                    self.begin_close(key);
                }
                Phase::Flushing if !http_busy(c) => {
                    // All sent: FIN (TLS: close_notify first, and FIN once
                    // it is out), then wait for the client's FIN.
                    match c.transport.shutdown_write(&mut self.pool) {
                        Ok(true) => {}
                        Ok(false) => {
                            c.writable = false; // the alert waits for room
                            return;
                        }
                        Err(e) => trace!("conn {}: shutdown: {e}", c.id),
                    }
                    if c.read_eof {
                        return self.close(key, Leave::Closed);
                    }
                    c.phase = Phase::Lingering;
                    if c.readable {
                        // Input is already waiting: discard it now.
                        if let Err(e) = self.read_conn(key) {
                            return self.fail(key, e);
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// A read or write failed: close this connection, and only it.
    pub(super) fn fail(&mut self, key: usize, e: io::Error) {
        if let Some(Slot::Conn(c)) = self.slab.get(key) {
            if is_disconnect(&e) {
                debug!("conn {}: {e}", c.id);
            } else {
                info!("conn {}: closing after error: {e}", c.id);
            }
        }
        self.close(key, Leave::Closed);
    }

    /// A deadline passed: idle too long, or a close the client never
    /// finished reading.
    pub(super) fn expire(&mut self, key: usize) {
        let Some(Slot::Conn(c)) = self.slab.get(key) else {
            return;
        };
        if c.service == Service::Ws && c.phase == Phase::Open && self.ws_keepalive(key) {
            return; // pinged; it has until the next deadline to answer
        }
        let Some(Slot::Conn(c)) = self.slab.get(key) else {
            return;
        };
        debug!("conn {}: deadline passed ({:?}), closing", c.id, c.phase);
        self.stats.timeouts += 1;
        if c.service == Service::Http && self.http_timeout_reply(key) {
            // 408 for a request that did not arrive in time, then a staged
            // close so the client reads it.
            self.begin_close(key);
            return self.drive(key);
        }
        self.close(key, Leave::TimedOut);
    }

    /// Closes connection `key` now. Its slot stays (as `Closed`) until the
    /// batch is over, so later events for its token are recognisably stale.
    pub(super) fn close(&mut self, key: usize, why: Leave) {
        let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
            return;
        };
        if c.phase == Phase::Closed {
            return;
        }
        c.phase = Phase::Closed;
        c.readable = false;
        c.writable = false;
        for slot in [&mut c.input, &mut c.output] {
            if let Some(buf) = slot.take() {
                self.pool.put(buf);
            }
        }
        c.transport.release(&mut self.pool);
        debug!("conn {} closed", c.id);
        let chat = c.service.is_chat();
        self.stats.open_by.add(c.service, -1);
        self.open -= 1;
        self.stats.closed += 1;
        self.closed.push(key);
        if chat {
            self.chat.disconnect(key, why, &mut outbox!(self));
            self.drop_too_slow();
        }
    }

    /// Drops chat members that went over their output cap during the last
    /// hub call: pending output discarded, one error line, closed.
    pub(super) fn drop_too_slow(&mut self) {
        while let Some(key) = self.too_slow.pop() {
            let Some(Slot::Conn(c)) = self.slab.get_mut(key) else {
                continue;
            };
            if !c.is_serving() {
                continue;
            }
            self.stats.slow_dropped += 1;
            info!(
                "chat: dropping conn {}: {} bytes unread, over its output limit",
                c.id,
                c.pending()
            );
            if c.service == Service::Ws {
                // Frames cannot be cut where a write stopped without knowing
                // where each one began: the backlog stays (bounded by the
                // hard cap, and by the linger time), then the error and a
                // close with 1008.
                let line = TOO_SLOW_LINE.strip_suffix(b"\n").unwrap_or(TOO_SLOW_LINE);
                let (head, n) = ws::text_header(line.len());
                c.queue(&head[..n], &mut self.pool);
                c.queue(line, &mut self.pool);
                c.queue(&ws::close_frame(ws::code::POLICY), &mut self.pool);
            } else if let Some(mut buf) = c.output.take() {
                // Discard the backlog, but finish the line the client may be
                // in the middle of (a write can stop mid-line), so it reads
                // whole lines and then the error.
                let keep = buf
                    .data()
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let drop = buf.len() - keep;
                buf.truncate_back(drop);
                c.output = Some(buf);
                c.queue(TOO_SLOW_LINE, &mut self.pool);
            }
            c.mark = 0;
            self.begin_close(key);
            self.chat
                .disconnect(key, Leave::TooSlow, &mut outbox!(self));
            if let Some(Slot::Conn(c)) = self.slab.get_mut(key)
                && !c.flush_queued
            {
                c.flush_queued = true;
                self.flush.push(key);
            }
        }
    }

    /// Accepts clients on listener `key` until `WouldBlock`, EMFILE or the
    /// per-turn cap.
    pub(super) fn accept(&mut self, key: usize) {
        if self.shutdown_at != 0 {
            return;
        }
        for _ in 0..self.limits.accepts_per_tick {
            let Some(Slot::Listener(l)) = self.slab.get_mut(key) else {
                return;
            };
            if !l.ready || l.retry_at != 0 {
                return;
            }
            let service = l.service;
            match l.accept() {
                Ok(client) => self.admit(service, client),
                Err(e) => match classify(&e) {
                    AcceptError::Drained => {
                        l.ready = false;
                        return;
                    }
                    AcceptError::Retry => continue,
                    AcceptError::Exhausted => {
                        // Out of fds: the client stays queued and no new edge
                        // will announce it. Keep `ready` and try again soon.
                        let now = self.clock.now();
                        l.retry_at = now + accept::ACCEPT_RETRY_MS;
                        self.stats.accept_errors += 1;
                        self.warned_accept = accept::warn_throttled(
                            self.warned_accept,
                            now,
                            format_args!("{}: accept failed: {e} (retrying)", service.name()),
                        );
                        return;
                    }
                },
            }
        }
        // Cut short by the per-turn cap: more clients may be queued.
        self.defer(key);
    }

    /// Takes an accepted client into the slab, or turns it away when full.
    /// A TLS listener's client speaks the plain service over TLS: the
    /// connection gets the service and a TLS transport.
    fn admit(&mut self, listener: Service, client: Accepted) {
        let service = listener.base();
        if self.open >= self.limits.max_conns {
            self.stats.refused += 1;
            self.warned_full = accept::warn_throttled(
                self.warned_full,
                self.clock.now(),
                format_args!(
                    "{}: at --max-conns ({}), turning clients away",
                    service.name(),
                    self.limits.max_conns
                ),
            );
            if listener == Service::Http {
                let reply = self.http_canned(503, false);
                return refuse(client, &reply);
            }
            if listener.is_tls() {
                return refuse(client, b""); // no plaintext line for a TLS client
            }
            return refuse(client, FULL_LINE);
        }
        let Some(transport) = self.tls_wrap(listener, client.transport) else {
            return;
        };
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut conn = Conn::new(transport, service, id);
        if let Err(e) = conn.transport.register(self.poll.registry(), Token(key)) {
            info!("{}: cannot register {}: {e}", service.name(), client.peer);
            return;
        }
        let when = match service {
            // Slowloris: the first request's head is due within the header
            // timeout of accept, however slowly its bytes trickle in.
            Service::Http => {
                conn.mark = self.clock.at(self.limits.header_timeout);
                conn.mark
            }
            _ => self.clock.after(self.limits.idle_timeout),
        };
        // The header deadline covers the TLS handshake too.
        let when = match (conn.transport.can_send(), when) {
            (true, w) => w,
            (false, 0) => self.clock.at(self.limits.header_timeout),
            (false, w) => w.min(self.clock.at(self.limits.header_timeout)),
        };
        rearm(&mut self.timers, key, &mut conn, when);
        entry.insert(Slot::Conn(conn));
        self.open += 1;
        self.stats.open_by.add(service, 1);
        self.stats.accepted += 1;
        debug!(
            "{} connection from {} (conn {id}, token {key})",
            listener.name(),
            client.peer
        );
        self.on_open(key, service);
    }

    /// The transport for a client of `listener`: TLS over `transport` for
    /// a TLS listener, else `transport` itself; `None` if TLS cannot start.
    fn tls_wrap(&mut self, listener: Service, transport: Transport) -> Option<Transport> {
        if !listener.is_tls() {
            return Some(transport);
        }
        let config = self.tls.as_ref()?.config_for(listener);
        match transport.start_tls(config) {
            Ok(t) => Some(t),
            Err(e) => {
                info!("{}: cannot start TLS: {e}", listener.name());
                None
            }
        }
    }

    /// A new connection's first words, then whatever its readiness allows.
    fn on_open(&mut self, key: usize, service: Service) {
        match service {
            Service::Greet => {
                let (greeting, verdict) = greet::on_open();
                if let Some(Slot::Conn(c)) = self.slab.get_mut(key) {
                    c.queue(greeting, &mut self.pool);
                }
                if verdict == Verdict::Close {
                    self.begin_close(key);
                }
            }
            Service::Chat => {
                self.chat.connect(key, &mut outbox!(self));
                self.drop_too_slow();
            }
            Service::Echo
            | Service::Unix
            | Service::Http
            | Service::Udp
            | Service::Https
            | Service::TlsEcho
            | Service::Ws => {}
        }
        self.drive(key);
    }

    /// One turn of UDP echo.
    pub(super) fn drive_udp(&mut self, key: usize) {
        if self.shutdown_at != 0 {
            return; // the socket is closed at the end of this turn
        }
        if self.udp_buf.is_empty() {
            self.udp_buf = vec![0; super::udp::RECV_BUF];
        }
        let Some(Slot::Udp(u)) = self.slab.get_mut(key) else {
            return;
        };
        match u.turn(&mut self.udp_buf, &mut self.stats) {
            Ok(UdpTurn::MoreToRead) => self.defer(key),
            Ok(UdpTurn::Drained) => {}
            Err(e) => info!("udp: {e}"),
        }
    }
}
