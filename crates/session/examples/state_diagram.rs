//! Prints `docs/session-states.md`, generated from the transition table:
//! `cargo run -p bookend-session --example state_diagram > docs/session-states.md`.

fn main() {
    println!("# Session state diagram (generated)\n");
    println!("Generated from `bookend_session::state::TRANSITIONS` by");
    println!("`cargo run -p bookend-session --example state_diagram > docs/session-states.md`;");
    println!("a test fails if this file is stale. Self-loops (for example DATA in OPEN) are");
    println!("listed in the table below but not drawn. The normative description is");
    println!("`docs/protocol.md` §5.\n");
    println!("```mermaid");
    print!("{}", bookend_session::state::mermaid());
    println!("```\n");
    println!("## Every input in every state\n");
    println!("```text");
    print!("{}", bookend_session::state::table_text());
    println!("```");
}
