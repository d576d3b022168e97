//! A real `redis-server` for a test: on a free loopback port, with no
//! persistence, killed when dropped; commands sent with the crate's own
//! RESP2 codec. And `Switch`, a TCP proxy in front of it that can hand
//! every connection through it to a fresh Redis connection without telling
//! the client, as a failover behind a proxy does (the subscriptions the
//! client thinks it has are gone).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reactor::service::resp;

use super::{TIMEOUT, TempDir, wait_until};

/// A port nothing listens on now (the OS's pick, let go at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `redis-server` child.
pub struct Redis {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (and log).
    dir: TempDir,
}

impl Redis {
    /// A new Redis on a free port, answering `PING` before this returns.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A new Redis on `port`.
    pub fn start_on(port: u16) -> Redis {
        let dir = TempDir::new("redis");
        let mut r = Redis {
            child: None,
            port,
            dir,
        };
        r.restart();
        r
    }

    /// Starts it (again) on the same port; waits for `PING`.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        self.child = Some(child);
        let addr = self.addr();
        let up = wait_until(TIMEOUT, || {
            TcpStream::connect(addr)
                .ok()
                .and_then(|mut s| command(&mut s, &["PING"]).ok())
                .is_some_and(|r| r == "PONG")
        });
        assert!(up, "redis-server on {} did not answer PING", self.port);
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it with SIGKILL (no goodbye to anyone) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends it `sig` (STOP, CONT).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Runs one command on a new connection; the reply as text.
    pub fn cmd(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(self.addr()).expect("connect to redis");
        command(&mut s, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // A stopped Redis would not die of SIGKILL until continued.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(c.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// Sends `args` on `s` and reads one reply: a simple or bulk string, an
/// integer, an error (as `ERR ...`), or an array's items joined by ",".
pub fn command(s: &mut TcpStream, args: &[&str]) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    resp::command(&mut out, &args);
    s.write_all(&out)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((v, _))) = resp::decode(&buf) {
            return Ok(text(&v));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A reply as text.
fn text(v: &resp::Value<'_>) -> String {
    use resp::Value;
    match v {
        Value::Simple(b) | Value::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
        Value::Error(b) => format!("ERR {}", String::from_utf8_lossy(b)),
        Value::Int(n) => n.to_string(),
        Value::Bulk(None) | Value::Array(None) => "(nil)".into(),
        Value::Array(Some(items)) => items.iter().map(text).collect::<Vec<_>>().join(","),
    }
}

/// A proxy to Redis whose connections can be switched to fresh Redis
/// connections behind the clients' backs.
pub struct Switch {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The Redis connections of the clients' connections, to be replaced.
    backends: Arc<Mutex<Vec<Arc<Mutex<TcpStream>>>>>,
    /// Where Redis is.
    redis: SocketAddr,
    /// Set when the test is over: the threads end.
    done: Arc<AtomicBool>,
}

impl Switch {
    /// A proxy to `redis` on a free port.
    pub fn new(redis: SocketAddr) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backends: Arc<Mutex<Vec<Arc<Mutex<TcpStream>>>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (b, d) = (backends.clone(), done.clone());
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !d.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let backend = Arc::new(Mutex::new(TcpStream::connect(redis).unwrap()));
                        b.lock().unwrap().push(backend.clone());
                        pipe(client, backend, d.clone());
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Switch {
            addr,
            backends,
            redis,
            done,
        }
    }

    /// `redis://` through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Every client connection goes on over a new Redis connection; the
    /// clients see nothing (no close, no error).
    pub fn switch(&self) {
        for backend in self.backends.lock().unwrap().iter() {
            let fresh = TcpStream::connect(self.redis).unwrap();
            let old = std::mem::replace(&mut *backend.lock().unwrap(), fresh);
            let _ = old.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        for backend in self.backends.lock().unwrap().iter() {
            let _ = backend.lock().unwrap().shutdown(Shutdown::Both);
        }
    }
}

/// Copies bytes both ways between `client` and whatever `backend` is at
/// the moment, until the client goes or the test ends.
fn pipe(client: TcpStream, backend: Arc<Mutex<TcpStream>>, done: Arc<AtomicBool>) {
    let mut from_client = client.try_clone().unwrap();
    let b = backend.clone();
    let d = done.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A write during a switch may meet the old, shut connection:
            // try the new one once it is there.
            let deadline = Instant::now() + Duration::from_secs(2);
            while b.lock().unwrap().write_all(&buf[..n]).is_err() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if d.load(Ordering::Acquire) {
                break;
            }
        }
        let _ = b.lock().unwrap().shutdown(Shutdown::Both);
    });
    thread::spawn(move || {
        let mut to_client = client;
        let mut buf = [0u8; 16 * 1024];
        while !done.load(Ordering::Acquire) {
            let mut current = backend.lock().unwrap().try_clone().unwrap();
            current
                .set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            loop {
                match current.read(&mut buf) {
                    Ok(0) => break, // the old one was shut: take the new
                    Ok(n) => {
                        if to_client.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if done.load(Ordering::Acquire) {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
}
