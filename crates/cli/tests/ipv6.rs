//! The seed scenario over IPv6 on the simulated network (feature `ipv6`):
//! `cargo test -p bookend-cli --features ipv6 --test ipv6`. The same demo
//! as over IPv4, every packet on the wire an IPv6 one, under loss,
//! reordering and duplication.
#![cfg(feature = "ipv6")]

use smoltcp::time::Duration;

use bookend_cli::demo::{DemoConfig, run};
use bookend_session::Mode;
use bookend_sim::LinkConfig;

/// The IP packets of a pcap capture (link type RAW: each record is an IP
/// packet).
fn packets(pcap: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let start = at + 16;
        out.push(&pcap[start..(start + len).min(pcap.len())]);
        at = start + len;
    }
    out
}

fn seed_over_ipv6(mode: Mode, link: LinkConfig, seed: u64) {
    let report = run(DemoConfig {
        clients: 20,
        mode,
        link,
        seed,
        capture: true,
        ipv6: true,
        ..DemoConfig::default()
    });
    assert!(report.ok(), "{report}");
    let pcap = report.pcap.as_deref().expect("the server's capture");
    let packets = packets(pcap);
    assert!(packets.len() > 100, "{} packets captured", packets.len());
    assert!(
        packets
            .iter()
            .all(|p| p.first().is_some_and(|b| b >> 4 == 6)),
        "a packet that is not IPv6"
    );
}

#[test]
fn the_seed_scenario_runs_over_ipv6_in_both_modes() {
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    seed_over_ipv6(Mode::Stream, link.clone(), 1);
    seed_over_ipv6(Mode::Message, link, 2);
}

#[test]
fn the_seed_scenario_runs_over_ipv6_with_faults() {
    let link = LinkConfig {
        latency: Duration::from_millis(5),
        loss: 0.05,
        reorder: 0.05,
        duplicate: 0.02,
        corrupt: 0.02,
        ..LinkConfig::default()
    };
    seed_over_ipv6(Mode::Stream, link, 3);
}
