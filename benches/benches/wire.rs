//! Wire codec: DATA parse and emit throughput, control frames per second.

// criterion_group! generates an undocumented `pub fn`; bench binaries have no API.
#![allow(missing_docs)]

use bookend_benches::criterion as config;
use bookend_wire::vectors::DEFAULT_OPTIONS;
use bookend_wire::{AcceptRepr, ConnectRepr, Decoded, FrameRepr, Limits, VERSION, decode};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn encode(repr: &FrameRepr<'_>) -> Vec<u8> {
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

fn data(c: &mut Criterion) {
    let limits = Limits::new(16 * 1024, 64 * 1024, 64 * 1024).unwrap();
    let mut g = c.benchmark_group("wire/data");
    for size in [64usize, 1024, 16 * 1024] {
        let payload = vec![0xA5u8; size];
        let frame = FrameRepr::Data {
            end_of_message: true,
            payload: &payload,
        };
        let bytes = encode(&frame);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("parse", size), &bytes, |b, bytes| {
            b.iter(|| match decode(black_box(bytes), &limits) {
                Ok(Decoded::Frame {
                    repr: FrameRepr::Data { payload, .. },
                    ..
                }) => black_box(payload.len()),
                _ => unreachable!(),
            })
        });
        let mut out = vec![0u8; bytes.len()];
        g.bench_with_input(BenchmarkId::new("emit", size), &payload, |b, payload| {
            b.iter(|| {
                FrameRepr::Data {
                    end_of_message: true,
                    payload: black_box(payload),
                }
                .emit(&mut out)
                .unwrap()
            })
        });
    }
    g.finish();
}

fn control(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire/control");
    g.throughput(Throughput::Elements(1));
    for size in [16usize, 4096] {
        let user = vec![7u8; size];
        let frames = [
            (
                "connect",
                FrameRepr::Connect(ConnectRepr {
                    min_version: VERSION,
                    max_version: VERSION,
                    options: DEFAULT_OPTIONS,
                    data: Some(&user),
                }),
            ),
            (
                "accept",
                FrameRepr::Accept(AcceptRepr {
                    version: VERSION,
                    options: DEFAULT_OPTIONS,
                    data: Some(&user),
                }),
            ),
            ("disconnect", FrameRepr::Disconnect { data: Some(&user) }),
        ];
        for (name, repr) in frames {
            let bytes = encode(&repr);
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/parse"), size),
                &bytes,
                |b, bytes| {
                    b.iter(|| black_box(decode(black_box(bytes), &Limits::DEFAULT).unwrap()))
                },
            );
            let mut out = vec![0u8; bytes.len()];
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/emit"), size),
                &repr,
                |b, repr| b.iter(|| black_box(repr).emit(&mut out).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = config(); targets = data, control }
criterion_main!(benches);
