//! bookend over smoltcp against raw smoltcp TCP, same devices and tuning.
//! `src/bin/compare.rs` prints the ratios of the same work.

// criterion_group! generates an undocumented `pub fn`; bench binaries have no API.
#![allow(missing_docs)]

use bookend_benches::{
    Bookend, Pair, criterion as config, raw_connect, raw_lifecycles, raw_transfer,
};
use bookend_session::Options;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BUF: usize = 64 * 1024;
const CHUNK: usize = 4 << 20;

fn bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("smoltcp/bulk");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    let data = vec![0x33u8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    g.bench_function("raw", |b| {
        let mut pair = Pair::new();
        let (cs, ss) = raw_connect(&mut pair, BUF, 50000);
        b.iter(|| raw_transfer(&mut pair, cs, ss, CHUNK, &data, &mut sink));
    });
    g.bench_function("bookend", |b| {
        let mut be = Bookend::new(BUF, 8);
        let (ch, sh) = be.connect(Options::DEFAULT);
        b.iter(|| be.transfer(ch, sh, CHUNK, &data, &mut sink));
    });
    g.finish();
}

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("smoltcp/lifecycle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw", |b| {
        let mut pair = Pair::new();
        let mut port = 10000u16;
        b.iter(|| {
            port = if port > 60000 { 10000 } else { port + 1 };
            raw_lifecycles(&mut pair, 1, 4096, port)
        });
    });
    g.bench_function("bookend", |b| {
        let mut be = Bookend::new(4096, 8);
        b.iter(|| be.lifecycles(1));
    });
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = bulk, lifecycle }
criterion_main!(benches);
