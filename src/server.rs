//! The public face of `reactor serve`: bind, then run; a `Handle` to stop
//! it and read its counters from another thread.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mio::Waker;

use crate::config::Config;
use crate::error::Result;
use crate::reactor::{Reactor, Shared};
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
    /// The event loop that will serve.
    reactor: Reactor,
}

impl Server {
    /// Opens every listener `config` asks for. Errors name the service and
    /// address ("echo: cannot listen on 127.0.0.1:8080: ...").
    pub fn bind(config: Config) -> Result<Server> {
        Ok(Server {
            reactor: Reactor::new(config)?,
        })
    }

    /// The address `service` is bound to (with port 0 resolved).
    pub fn local_addr(&self, service: Service) -> Option<SocketAddr> {
        self.reactor.local_addr(service)
    }

    /// The Unix socket path, if serving one.
    pub fn unix_path(&self) -> Option<&Path> {
        self.reactor.unix_path()
    }

    /// A handle to stop the server and read its counters.
    pub fn handle(&self) -> Handle {
        let (waker, shared) = self.reactor.shared();
        Handle { waker, shared }
    }

    /// Serves until shutdown (a signal, or `Handle::shutdown`); returns the
    /// final counters.
    pub fn run(self) -> Result<Stats> {
        self.reactor.run()
    }
}

/// Talks to a running server from another thread.
#[derive(Clone)]
pub struct Handle {
    /// Wakes the loop's poll.
    waker: Arc<Waker>,
    /// The stop flag and the stats snapshot.
    shared: Arc<Shared>,
}

impl Handle {
    /// Asks for a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            log::warn!("cannot wake the reactor: {e}");
        }
    }

    /// The counters as of the loop's last housekeeping tick (every 100 ms)
    /// or its exit.
    pub fn stats(&self) -> Stats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}
