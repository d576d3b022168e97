//! Criterion benchmarks of the hot paths, so a change in CPU cost per
//! request shows: the buffer pool, chat fan-out, and the load
//! generator's own per-response work (echo verify, HTTP response parse,
//! histogram recording).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use reactor::bench::driver::Parser;
use reactor::bench::echo::{EchoParser, payload};
use reactor::bench::http::HttpParser;
use reactor::bench::record::Recorder;
use reactor::buf::Pool;
use reactor::service::Outbox;
use reactor::service::chat::ChatHub;

/// An outbox that keeps each member's bytes in a Vec (cleared per round).
struct VecOutbox(HashMap<usize, Vec<u8>>);

impl Outbox for VecOutbox {
    fn send(&mut self, to: usize, bytes: &[u8]) {
        self.0.entry(to).or_default().extend_from_slice(bytes);
    }
}

/// Buffer pool: take and return a buffer.
fn pool(c: &mut Criterion) {
    let mut p = Pool::new(256);
    c.bench_function("pool get+put", |b| {
        b.iter(|| {
            let buf = p.get();
            p.put(black_box(buf));
        })
    });
}

/// Chat: one line fanned out to a 100-member lobby.
fn chat_fan_out(c: &mut Criterion) {
    let mut hub = ChatHub::new(4096);
    let mut out = VecOutbox(HashMap::new());
    for id in 0..100 {
        hub.connect(id, &mut out);
    }
    c.bench_function("chat fan-out to 100", |b| {
        b.iter(|| {
            for v in out.0.values_mut() {
                v.clear();
            }
            hub.input(0, black_box(b"hello everyone\n"), &mut out)
        })
    });
}

/// The generator's per-response work.
fn generator(c: &mut Criterion) {
    let msg = payload(64);
    let stream = msg.repeat(16);
    let mut echo = EchoParser::new(&msg);
    c.bench_function("bench echo verify 16x64B", |b| {
        b.iter(|| {
            let mut n = 0;
            let _ = echo.feed(black_box(&stream), &mut |_| n += 1);
            n
        })
    });
    let resp = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, client!".repeat(16);
    let mut http = HttpParser::default();
    c.bench_function("bench http parse 16 responses", |b| {
        b.iter(|| {
            let mut n = 0;
            let _ = http.feed(black_box(&resp), &mut |_| n += 1);
            n
        })
    });
    let mut rec = Recorder::new(0, u64::MAX);
    let mut t = 1_000u64;
    c.bench_function("bench record one response", |b| {
        b.iter(|| {
            t += 977;
            rec.done(black_box(t + 150_000), t, t + 20);
        })
    });
}

criterion_group!(benches, pool, chat_fan_out, generator);
criterion_main!(benches);
