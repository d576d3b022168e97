//! The loop's counters: kept as plain integers by the one thread that
//! owns them (no atomics on the hot path), copied out as a snapshot a few
//! times a second for other threads (`Handle::stats`) and at exit.

use std::fmt;

use crate::service::Service;

/// Counters and gauges of one reactor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (and kept) since start.
    pub accepted: u64,
    /// Connections turned away at `--max-conns`.
    pub refused: u64,
    /// Connections open now (gauge).
    pub open: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Bytes read from clients (TCP, Unix and UDP).
    pub bytes_in: u64,
    /// Bytes written to clients (TCP, Unix and UDP).
    pub bytes_out: u64,
    /// Readiness events handled.
    pub events: u64,
    /// Polls that returned at least one event.
    pub wakeups: u64,
    /// Loop iterations (polls, including timeouts).
    pub iterations: u64,
    /// Connections closed by a deadline (idle, linger, flush).
    pub timeouts: u64,
    /// Chat members dropped for not reading (output caps).
    pub slow_dropped: u64,
    /// UDP datagrams received.
    pub udp_in: u64,
    /// UDP datagrams sent back.
    pub udp_out: u64,
    /// UDP replies dropped because the send queue was full.
    pub udp_dropped: u64,
    /// Accept errors for lack of fds (EMFILE/ENFILE), each retried later.
    pub accept_errors: u64,
    /// HTTP responses sent.
    pub http_requests: u64,
    /// HTTP connections upgraded to WebSocket.
    pub ws_upgrades: u64,
    /// WebSocket messages received (whole, reassembled).
    pub ws_messages: u64,
    /// Connections open now, by the service they speak (gauges).
    pub open_by: OpenBy,
}

/// Open connections by service (gauges). TLS connections count under the
/// service they carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenBy {
    /// Greet connections (only while the greeting goes out).
    pub greet: u64,
    /// TCP echo, plain or TLS.
    pub echo: u64,
    /// Line chat members.
    pub chat: u64,
    /// Unix-socket echo.
    pub unix: u64,
    /// HTTP, plain or TLS.
    pub http: u64,
    /// WebSocket chat members.
    pub ws: u64,
}

impl OpenBy {
    /// The gauge of connections speaking `service` (`None` for a service
    /// that has no connections of its own: UDP, the TLS listeners).
    pub fn of(&mut self, service: Service) -> Option<&mut u64> {
        match service {
            Service::Greet => Some(&mut self.greet),
            Service::Echo => Some(&mut self.echo),
            Service::Chat => Some(&mut self.chat),
            Service::Unix => Some(&mut self.unix),
            Service::Http => Some(&mut self.http),
            Service::Ws => Some(&mut self.ws),
            Service::Udp | Service::Https | Service::TlsEcho => None,
        }
    }

    /// Adds `delta` (+1 or -1) to `service`'s gauge.
    pub fn add(&mut self, service: Service, delta: i64) {
        if let Some(n) = self.of(service) {
            *n = n.saturating_add_signed(delta);
        }
    }
}

impl std::ops::AddAssign for OpenBy {
    fn add_assign(&mut self, o: OpenBy) {
        let OpenBy {
            greet,
            echo,
            chat,
            unix,
            http,
            ws,
        } = o;
        self.greet += greet;
        self.echo += echo;
        self.chat += chat;
        self.unix += unix;
        self.http += http;
        self.ws += ws;
    }
}

impl std::ops::AddAssign for Stats {
    /// Sums another loop's counters into these (gauges add up too).
    fn add_assign(&mut self, o: Stats) {
        let Stats {
            accepted,
            refused,
            open,
            closed,
            bytes_in,
            bytes_out,
            events,
            wakeups,
            iterations,
            timeouts,
            slow_dropped,
            udp_in,
            udp_out,
            udp_dropped,
            accept_errors,
            http_requests,
            ws_upgrades,
            ws_messages,
            open_by,
        } = o;
        self.accepted += accepted;
        self.refused += refused;
        self.open += open;
        self.closed += closed;
        self.bytes_in += bytes_in;
        self.bytes_out += bytes_out;
        self.events += events;
        self.wakeups += wakeups;
        self.iterations += iterations;
        self.timeouts += timeouts;
        self.slow_dropped += slow_dropped;
        self.udp_in += udp_in;
        self.udp_out += udp_out;
        self.udp_dropped += udp_dropped;
        self.accept_errors += accept_errors;
        self.http_requests += http_requests;
        self.ws_upgrades += ws_upgrades;
        self.ws_messages += ws_messages;
        self.open_by += open_by;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} refused={} open={} closed={} timeouts={} slow_dropped={} \
             bytes_in={} bytes_out={} udp_in={} udp_out={} udp_dropped={} \
             http_requests={} events={} wakeups={} iterations={} accept_errors={}",
            self.accepted,
            self.refused,
            self.open,
            self.closed,
            self.timeouts,
            self.slow_dropped,
            self.bytes_in,
            self.bytes_out,
            self.udp_in,
            self.udp_out,
            self.udp_dropped,
            self.http_requests,
            self.events,
            self.wakeups,
            self.iterations,
            self.accept_errors
        )
    }
}
