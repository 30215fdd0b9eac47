/*! A deterministic network of smoltcp hosts in virtual time, and a TAP runner.

[`Sim`] connects N hosts (smoltcp `Interface`s on Medium::Ip devices) in a
star. Each host has an uplink and a downlink ([`LinkConfig`]) with latency and
jitter, bandwidth with a drop-tail queue, loss, reordering, duplication, bit
corruption (checksums are real, so TCP discards it), an MTU, timed partitions,
and crash/restart of the whole host. [`Sim::run`] never sleeps: it jumps
virtual time to the next packet arrival or poll deadline, in the manner of
smoltcp's `tests/netsim.rs`. Everything random comes from one seeded stream,
so a seed and an application give byte-identical traffic; every host's
traffic is captured with smoltcp's own `PcapWriter` ([`Sim::pcap`]).

Why not smoltcp's `FaultInjector`: it works per device (both directions at
once), clamps the MTU to 1536, draws from its own per-device xorshift (whose
seed 0 drops every packet), and knows no latency or bandwidth. The links here
need per-direction behaviour and one random stream for the whole network.

With the `tap` feature, [`tap::TapHost`] runs a host on a real Linux TAP
device in real time.
*/
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod net;
mod rng;
// TAP devices are Linux's (smoltcp's `TunTapInterface` exists on Linux and
// Android only): elsewhere the simulated network alone is built.
#[cfg(all(feature = "tap", any(target_os = "linux", target_os = "android")))]
pub mod tap;

#[cfg(feature = "ipv6")]
pub use net::host_addr_v6;
pub use net::{
    App, Filter, Host, HostStats, LinkConfig, LinkStats, RunError, Sim, SimDevice, SimRx, SimTx,
    Totals, host_addr, ip_parts,
};
pub use rng::Rng;
