//! The public face of `reactor serve`: bind, then run; a `Handle` to stop
//! it and read its counters from another thread.
//!
//! With `Config::threads` above one, the server is several independent
//! event loops, one per thread, like nginx's workers: each has its own
//! `Poll`, slab and listeners, bound to the same ports with `SO_REUSEPORT`,
//! so the kernel spreads new connections across them. They share nothing
//! but chat lines (see `reactor/bus.rs`). The Unix socket, which cannot be
//! shared that way, is served by the first loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use log::info;
use mio::Waker;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reactor::{Reactor, Shared, bus};
use crate::service::Service;
use crate::stats::Stats;

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
    loops: Vec<Reactor>,
}

impl Server {
    /// Opens every listener `config` asks for, in every loop. Errors name
    /// the service and address ("echo: cannot listen on 127.0.0.1:8080: ...").
    pub fn bind(mut config: Config) -> Result<Server> {
        let n = config.threads.max(1);
        if n > 1 {
            config.reuse_port = true;
        }
        let first = Reactor::new(config.clone())?;
        // The other loops bind the ports the first one got (port 0 resolved).
        let mut rest_config = config;
        rest_config.unix = None;
        for (service, slot) in [
            (Service::Greet, &mut rest_config.greet),
            (Service::Echo, &mut rest_config.echo),
            (Service::Udp, &mut rest_config.udp),
            (Service::Chat, &mut rest_config.chat),
            (Service::Http, &mut rest_config.http),
        ] {
            if slot.is_some() {
                *slot = first.local_addr(service);
            }
        }
        let mut loops = vec![first];
        for _ in 1..n {
            loops.push(Reactor::new(rest_config.clone())?);
        }
        if n > 1 {
            let wakers: Vec<Arc<Waker>> = loops.iter().map(Reactor::waker).collect();
            for (i, (r, b)) in loops.iter_mut().zip(bus::mesh(&wakers)).enumerate() {
                r.join_loops(i, n, b);
            }
            info!("{n} event loops share these ports (SO_REUSEPORT)");
        }
        Ok(Server { loops })
    }

    /// The address `service` is bound to (with port 0 resolved).
    pub fn local_addr(&self, service: Service) -> Option<SocketAddr> {
        self.loops[0].local_addr(service)
    }

    /// The Unix socket path, if serving one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.loops[0].unix_path()
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        Handle {
            loops: self.loops.iter().map(Reactor::shared).collect(),
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
                    .spawn(move || r.run())
            })
            .collect::<std::io::Result<_>>()?;
        let mut result = first.run();
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

/// Talks to a running server from another thread.
#[derive(Clone)]
pub struct Handle {
    /// Each loop's waker and shared state (stop flag, stats snapshot).
    loops: Vec<(Arc<Waker>, Arc<Shared>)>,
}

impl Handle {
    /// Asks for a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        for (waker, shared) in &self.loops {
            shared.stop.store(true, Ordering::Release);
            if let Err(e) = waker.wake() {
                log::warn!("cannot wake the reactor: {e}");
            }
        }
    }

    /// The counters as of the loops' last housekeeping tick (every 100 ms)
    /// or their exit, summed over the loops.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for (_, shared) in &self.loops {
            total += *shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        }
        total
    }
}
