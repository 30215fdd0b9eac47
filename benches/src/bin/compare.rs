//! bookend against raw smoltcp TCP, the same work in the same process, with
//! the ratios printed. Runs each measurement alternately (raw, bookend, raw,
//! ...) and reports medians, so machine noise hits both variants alike.
//!
//! `cargo run --release -p bookend-benches --bin compare`
//! (`BOOKEND_BENCH_QUICK=1` for a short run).

use std::time::{Duration, Instant};

use bookend_benches::{
    Bookend, Pair, quick, raw_connect, raw_lifecycles, raw_same_exchange, raw_transfer,
};
use bookend_session::{Integrity, Options};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let rounds = if quick() { 3 } else { 7 };
    let bulk_bytes: usize = if quick() { 32 << 20 } else { 256 << 20 };
    let seq = if quick() { 300 } else { 2000 };
    let data = vec![0x42u8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    const BUF: usize = 64 * 1024;

    let (mut raw_bulk, mut be_bulk, mut crc_bulk) = (Vec::new(), Vec::new(), Vec::new());
    let (mut raw_seq, mut be_seq) = (Vec::new(), Vec::new());
    let (mut raw_conc, mut be_conc) = (Vec::new(), Vec::new());
    let (mut same_seq, mut same_conc) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Bulk: a connected pair, then `bulk_bytes` one way (set-up not timed).
        let mut pair = Pair::new();
        let (c, s) = raw_connect(&mut pair, BUF, 50000);
        let d = time(|| raw_transfer(&mut pair, c, s, bulk_bytes, &data, &mut sink));
        raw_bulk.push(bulk_bytes as f64 * 8.0 / d.as_secs_f64() / 1e9);
        // One armed listening socket: the raw baseline has none left during
        // the transfer, and each idle one costs every interface poll a
        // dispatch (callgrind, 64 MiB: 0.952 of raw with 1, 0.942 with 8).
        let mut be = Bookend::new(BUF, 1);
        let unsealed = Options {
            integrity: Integrity::None,
            ..Options::DEFAULT
        };
        let (ch, sh) = be.connect(unsealed);
        let d = time(|| be.transfer(ch, sh, bulk_bytes, &data, &mut sink));
        be_bulk.push(bulk_bytes as f64 * 8.0 / d.as_secs_f64() / 1e9);
        // The same with the CRC-32C trailer negotiated (docs/protocol.md §2.5).
        let mut be = Bookend::new(BUF, 1);
        let sealed = Options {
            integrity: Integrity::Crc32c,
            ..Options::DEFAULT
        };
        let (ch, sh) = be.connect(sealed);
        let d = time(|| be.transfer(ch, sh, bulk_bytes, &data, &mut sink));
        crc_bulk.push(bulk_bytes as f64 * 8.0 / d.as_secs_f64() / 1e9);

        // Sequential lifecycles.
        let mut pair = Pair::new();
        let mut port = 10000u16;
        let d = time(|| {
            for _ in 0..seq {
                port += 1;
                raw_lifecycles(&mut pair, 1, 4096, port);
            }
        });
        raw_seq.push(seq as f64 / d.as_secs_f64());
        let mut pair = Pair::new();
        let mut port = 10000u16;
        let d = time(|| {
            for _ in 0..seq {
                port += 1;
                raw_same_exchange(&mut pair, 1, 4096, port);
            }
        });
        same_seq.push(seq as f64 / d.as_secs_f64());
        // One armed listening socket, as the raw baselines have: with a
        // backlog of 8, the seven idle listeners cost every interface poll
        // a dispatch each (callgrind: 8 % of the instructions).
        let mut be = Bookend::new(4096, 1);
        let d = time(|| {
            for _ in 0..seq {
                be.lifecycles(1);
            }
        });
        be_seq.push(seq as f64 / d.as_secs_f64());

        // 1000 concurrent lifecycles.
        let mut pair = Pair::new();
        let d = time(|| raw_lifecycles(&mut pair, 1000, 4096, 20000));
        raw_conc.push(1000.0 / d.as_secs_f64());
        let mut pair = Pair::new();
        let d = time(|| raw_same_exchange(&mut pair, 1000, 4096, 20000));
        same_conc.push(1000.0 / d.as_secs_f64());
        let mut be = Bookend::new(4096, 1000);
        let d = time(|| be.lifecycles(1000));
        be_conc.push(1000.0 / d.as_secs_f64());
    }
    let (be_seq, be_conc) = (median(be_seq), median(be_conc));
    let (raw_bulk, be_bulk, crc_bulk) = (median(raw_bulk), median(be_bulk), median(crc_bulk));
    let rows = [
        ("bulk, Gbit/s, integrity off", raw_bulk, be_bulk),
        ("bulk, Gbit/s, integrity on (default)", raw_bulk, crc_bulk),
        (
            "lifecycles/s, sequential (minimal)",
            median(raw_seq),
            be_seq,
        ),
        (
            "lifecycles/s, sequential (same exchange)",
            median(same_seq),
            be_seq,
        ),
        (
            "lifecycles/s, 1000 conc. (minimal)",
            median(raw_conc),
            be_conc,
        ),
        (
            "lifecycles/s, 1000 conc. (same exchange)",
            median(same_conc),
            be_conc,
        ),
    ];
    println!(
        "{:<42} {:>14} {:>14} {:>8}",
        "measure (median of rounds)", "raw smoltcp", "bookend", "ratio"
    );
    for (name, raw, be) in rows {
        println!("{name:<42} {raw:>14.2} {be:>14.2} {:>8.3}", be / raw);
    }
    println!(
        "integrity on / off, bulk: {:.3} (target 0.95)",
        crc_bulk / be_bulk
    );
    println!(
        "({rounds} rounds; bulk {} MiB per run; {seq} sequential lifecycles per run)",
        bulk_bytes >> 20
    );
}
