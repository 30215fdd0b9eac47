//! Prints `docs/endpoint-phases.md`, generated from the endpoint's phase
//! table: `cargo run -p bookend-smoltcp --example phase_table > docs/endpoint-phases.md`
//! (`ci/regen-state-docs` does it with the session's documents).

fn main() {
    println!("# Endpoint phase table (generated)\n");
    println!("Generated from `bookend-smoltcp`'s phase table (`endpoint/phase.rs`) by");
    println!("`cargo run -p bookend-smoltcp --example phase_table > docs/endpoint-phases.md`;");
    println!("a test fails if this file is stale. A connection's *phase* says who it belongs");
    println!("to: held at the SYN by SO_CONDITIONAL_ACCEPT (`SynPaused`), waiting for the");
    println!("listener's decision (`Pending`), refused before the application owned it");
    println!("(`Refused`), the application's (`Owned`), or closed by it and lingering");
    println!("(`Released`). Its session's own states are `docs/session-states.md`. Every");
    println!("change of phase is a row here, with the counter of `Stats` it bumps; an event");
    println!("without a row in the current phase changes nothing.\n");
    print!("{}", bookend_smoltcp::phase_table());
}
