//! The public face of `reactor serve`: bind, then run; a `Handle` to stop
//! it and read its counters from another thread.
//!
//! With `Config::threads` above one, the server is several independent
//! event loops, one per thread, like nginx's workers: each has its own
//! `Poll`, slab and listeners, bound to the same ports with `SO_REUSEPORT`,
//! so the kernel spreads new connections across them. They share nothing
//! but chat lines (`proto/loops.rs`). The Unix socket, which cannot be
//! shared that way, is served by the first loop.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{info, warn};
use mio::Waker;

use crate::config::{Bind, BusSettings, Config};
use crate::core::{ListenSocket, Reactor, Stopper};
use crate::error::{Error, Result};
use crate::listen;
use crate::proto::access::AccessLog;
use crate::proto::{Protocols, Socket, UdpEcho, loops};
use crate::service::Service;
use crate::service::bus::{self, Bus, BusConfig, Origin};
use crate::service::chat::Guests;
use crate::stats::Stats;
use crate::tls::TlsSetup;

/// A bound server, ready to run.
///
/// ```
/// use std::io::{Read, Write};
/// use reactor::{Config, Server, Service};
///
/// let mut config = Config::empty();
/// config.echo = Some("127.0.0.1:0".parse().unwrap()); // port 0: the OS picks
/// let server = Server::bind(config).unwrap();
/// let addr = server.local_addr(Service::Echo).unwrap();
/// let handle = server.handle();
/// let thread = std::thread::spawn(move || server.run());
///
/// let mut client = std::net::TcpStream::connect(addr).unwrap();
/// client.write_all(b"hello").unwrap();
/// let mut echoed = [0; 5];
/// client.read_exact(&mut echoed).unwrap();
/// assert_eq!(&echoed, b"hello");
///
/// drop(client);
/// handle.shutdown(); // as SIGTERM would: finish, flush, close
/// let stats = thread.join().unwrap().unwrap();
/// assert_eq!(stats.accepted, 1);
/// ```
pub struct Server {
    /// The event loops; the first one runs on the caller's thread.
    loops: Vec<Reactor<Protocols>>,
    /// The addresses the first loop bound (port 0 resolved); the others
    /// bound the same.
    bound: Vec<(Service, SocketAddr)>,
    /// The Unix socket path, if serving one.
    unix_path: Option<PathBuf>,
}

/// Logs the whole-server memory cap, and warns when one loop's share is
/// under what a single `/ws/echo` connection holds at its largest (the
/// message reassembled in its input, its echo in the output: about twice
/// `--ws-max-message`): such a connection would be evicted mid-message.
fn say_memory_cap(limits: &crate::config::Limits, loops: usize, ws_echo: bool) {
    let cap = limits.max_client_memory;
    if cap == 0 {
        return info!("memory: no cap on what connections hold (--max-client-memory 0)");
    }
    let share = cap.div_ceil(loops);
    info!("memory: connections may hold {cap} bytes in all ({share} per loop)");
    let largest = 2 * limits.ws_max_message + limits.output_cap;
    if ws_echo && share < largest {
        warn!(
            "memory: a loop's share of --max-client-memory ({share} bytes) is under the \
             {largest} one WebSocket echo connection may hold (a --ws-max-message message in, \
             its echo out): such a connection is evicted"
        );
    }
}

impl Server {
    /// Opens every listener `config` asks for, in every loop. Errors name
    /// the service and address ("echo: cannot listen on 127.0.0.1:8080: ...").
    pub fn bind(mut config: Config) -> Result<Server> {
        let n = config.threads.max(1);
        config.reuse_port |= n > 1;
        let wanted = config.listeners();
        let tls = if wanted.iter().any(|(s, _)| s.is_tls()) {
            let (cert, key) = (config.tls_cert.as_deref(), config.tls_key.as_deref());
            Some(TlsSetup::load(cert, key)?)
        } else {
            None
        };
        let mut server = Server {
            loops: Vec::with_capacity(n),
            bound: Vec::new(),
            unix_path: None,
        };
        let print = match (&tls, config.tls_cert.as_deref()) {
            (Some(_), Some(cert)) => crate::tls::fingerprint(cert).unwrap_or_default(),
            _ => String::new(),
        };
        for i in 0..n {
            let mut app = Protocols::new(&config);
            app.lead = i == 0;
            app.tls_print = print.clone();
            if let Some(path) = &config.access_log {
                let log = AccessLog::open(path).map_err(|e| {
                    Error::Config(format!("access log {}: cannot open: {e}", path.display()))
                })?;
                if i == 0 {
                    info!("access log: {}", log.shown());
                }
                app.access = Some(Box::new(log));
            }
            let mut r = Reactor::new(app, config.limits.core(), config.handle_signals, n)?;
            for (service, bind) in &wanted {
                // The other loops bind the ports the first one got.
                let bind = match bind {
                    Bind::Unix(_) if i > 0 => continue,
                    // One arena, on the first loop (see docs/GAME.md).
                    Bind::Udp(_) if i > 0 && *service == Service::Game => continue,
                    Bind::Tcp(_) if i > 0 => Bind::Tcp(server.addr_of(*service)?),
                    Bind::Udp(_) if i > 0 => Bind::Udp(server.addr_of(*service)?),
                    other => other.clone(),
                };
                let addr = open(&mut r, *service, &bind, &config, tls.as_ref())?;
                if i == 0 {
                    match (addr, bind) {
                        (Some(a), _) => {
                            info!("{service} listening on {a}");
                            server.bound.push((*service, a));
                        }
                        (None, Bind::Unix(p)) => {
                            info!("{service} listening on {}", p.display());
                            server.unix_path = Some(p);
                        }
                        (None, _) => {}
                    }
                }
            }
            server.loops.push(r);
        }
        let ws_echo = wanted
            .iter()
            .any(|(s, _)| matches!(s, Service::Http | Service::Https));
        say_memory_cap(&config.limits, n, ws_echo);
        if n > 1 {
            let wakers: Vec<Arc<Waker>> = server.loops.iter().map(Reactor::waker).collect();
            for (r, mesh) in server.loops.iter_mut().zip(loops::mesh(&wakers)) {
                r.app.loops = Some(mesh);
            }
            info!("{n} event loops share these ports (SO_REUSEPORT)");
        }
        let node = match &config.bus {
            Some(settings) => Some(join_bus(&mut server.loops, settings)?),
            None => None,
        };
        for (i, r) in server.loops.iter_mut().enumerate() {
            r.app.chat.set_guests(Guests {
                stride: n,
                tag: i,
                server: node.map(|node| (node & 0xff_ffff) as u32),
            });
        }
        // Every listener is open: each loop's share of the connections can
        // be fitted under the open-files limit now, on this thread, so no
        // loop opens an fd of its own after the server says it is ready.
        for r in &mut server.loops {
            r.fit_fd_limit();
        }
        Ok(server)
    }

    /// The address the first loop bound for `service`.
    fn addr_of(&self, service: Service) -> Result<SocketAddr> {
        self.local_addr(service)
            .ok_or_else(|| Error::Config(format!("{service}: no address bound")))
    }

    /// The address `service` is bound to (with port 0 resolved).
    pub fn local_addr(&self, service: Service) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
    }

    /// The Unix socket path, if serving one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix_path.as_deref()
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        Handle {
            loops: self
                .loops
                .iter()
                .map(|r| (r.stopper(), r.app.published.clone()))
                .collect(),
        }
    }

    /// Serves until shutdown (a signal, or `Handle::shutdown`); returns the
    /// final counters, summed over the loops.
    pub fn run(self) -> Result<Stats> {
        let mut loops = self.loops.into_iter();
        let Some(first) = loops.next() else {
            return Err(Error::Config("no event loop".into()));
        };
        let threads: Vec<_> = loops
            .enumerate()
            .map(|(i, r)| {
                std::thread::Builder::new()
                    .name(format!("loop-{}", i + 1))
                    .spawn(move || run_loop(r))
            })
            .collect::<std::io::Result<_>>()?;
        let mut result = run_loop(first);
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(Error::Config("an event loop panicked".into())));
            result = match (result, r) {
                (Ok(mut a), Ok(b)) => {
                    a += b;
                    Ok(a)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
        }
        result
    }
}

/// Opens the listener for `service` at `bind` in loop `r`: a TCP or Unix
/// listener (over TLS for the TLS services), or the UDP echo socket.
/// Returns its IP address, if it has one.
fn open(
    r: &mut Reactor<Protocols>,
    service: Service,
    bind: &Bind,
    config: &Config,
    tls: Option<&TlsSetup>,
) -> Result<Option<SocketAddr>> {
    let name = service.name();
    match bind {
        Bind::Tcp(addr) => {
            let socket = ListenSocket::Tcp(listen::tcp(name, *addr, config.reuse_port)?);
            let tls = match (service, tls) {
                (Service::Https, Some(t)) => Some(t.https.clone()),
                (Service::TlsEcho, Some(t)) => Some(t.plain.clone()),
                _ => None,
            };
            r.listen(socket, service, tls)
        }
        Bind::Unix(path) => r.listen(ListenSocket::Unix(listen::unix(name, path)?), service, None),
        Bind::Udp(addr) if service == Service::Game => {
            let socket = listen::udp(name, *addr, false)?;
            let local = socket.local_addr()?;
            crate::proto::game::open(r, socket)?;
            Ok(Some(local))
        }
        Bind::Udp(addr) => {
            let socket = listen::udp(name, *addr, config.reuse_port)?;
            let local = socket.local_addr()?;
            let udp = UdpEcho::new(socket, config.limits.udp_queue);
            r.add_source(Socket::UdpEcho(Box::new(udp)))?;
            Ok(Some(local))
        }
    }
}

/// Gives every loop its end of the Redis bus (each loop is an origin on
/// it: `NODE.LOOP`); returns this process's node id.
fn join_bus(loops: &mut [Reactor<Protocols>], settings: &BusSettings) -> Result<u64> {
    let url = &settings.url;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| Error::Config(format!("bus: cannot resolve {url}: {e}")))?
        .next()
        .ok_or_else(|| Error::Config(format!("bus: {url} resolves to no address")))?;
    let node = bus::random_node();
    for (i, r) in loops.iter_mut().enumerate() {
        let config = BusConfig {
            addr: url.to_string(),
            prefix: settings.prefix.clone(),
            db: url.db,
            user: url.user.clone(),
            password: url.password.clone(),
            queue_cap: settings.queue_cap,
            lease: settings.lease,
        };
        let origin = Origin {
            node,
            lane: i as u16,
        };
        r.app.bus = Some(Box::new(Bus::new(config, origin)));
        r.app.bus_addr = Some(addr);
    }
    info!(
        "bus: chat rooms shared over redis at {url} ({addr}), prefix {}, node {node:016x}",
        settings.prefix
    );
    Ok(node)
}

/// Runs one loop to its end, then publishes and logs its final counters.
fn run_loop(r: Reactor<Protocols>) -> Result<Stats> {
    let ended = r.run()?;
    let stats = ended.app.stats.with_core(&ended.counters, 0, 0);
    *ended
        .app
        .published
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = stats;
    info!("stopped: {stats}");
    if ended.aborted {
        return Err(Error::Aborted);
    }
    Ok(stats)
}

/// Talks to a running server from another thread.
#[derive(Clone)]
pub struct Handle {
    /// Each loop's stopper and its latest published counters.
    loops: Vec<(Stopper, Arc<Mutex<Stats>>)>,
}

impl Handle {
    /// Asks for a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        for (stopper, _) in &self.loops {
            stopper.stop();
        }
    }

    /// The counters as of the loops' last housekeeping tick (every 100 ms)
    /// or their exit, summed over the loops.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for (_, stats) in &self.loops {
            total += *stats.lock().unwrap_or_else(|e| e.into_inner());
        }
        total
    }
}
