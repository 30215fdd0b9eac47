//! Prints `docs/session-states.md`, generated from the transition table:
//! `cargo run -p bookend-session --example state_diagram > docs/session-states.md`.

fn main() {
    if std::env::args().any(|a| a == "--table") {
        // Only the table, for docs/protocol.md §5.3 (see ci/regen-state-docs).
        print!("{}", bookend_session::state::markdown_table());
        return;
    }
    println!("# Session state table (generated)\n");
    println!("Generated from `bookend_session::state::TRANSITIONS` by");
    println!("`cargo run -p bookend-session --example state_diagram > docs/session-states.md`;");
    println!("a test fails if this file is stale. The table is the whole behaviour of a");
    println!("session's states: every legal (state, input) cell with its effects, executed");
    println!("in the order shown (discard, integrity rule, frame sent, FIN or RST, timers");
    println!(
        "cleared, timers armed, state, event posted). A cell not listed is illegal: a received frame or FIN"
    );
    println!("there is a violation (ABORT `UNEXPECTED_FRAME` / `UNEXPECTED_EOF`, or RST");
    println!("only after our FIN), a command fails and changes nothing, a stale timer is");
    println!("ignored. \"reason, data\" means the ones the command or violation gave.");
    println!("DATA delivery and the FD_READ / FD_WRITE events are the data path and not");
    println!("shown. The normative description is `docs/protocol.md` §5.\n");
    println!("## Diagram\n");
    println!("Self-loops are in the table, not drawn.\n");
    println!("```mermaid");
    print!("{}", bookend_session::state::mermaid());
    println!("```\n");
    println!("## Every legal cell\n");
    print!("{}", bookend_session::state::markdown_table());
}
