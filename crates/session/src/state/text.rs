//! The table as text: the snapshot, the generated doc and the diagram all
//! come from [`super::TRANSITIONS`], so they cannot drift from the code.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::{
    Control, Discard, End, Input, Next, Post, Row, Seal, State, TimerId, Timers, Transport,
};

fn timers(out: &mut Vec<String>, verb: &str, t: Timers) {
    if t.is_empty() {
        return;
    }
    if t == Timers::ALL_BUT_FLUSH {
        out.push(alloc::format!("{verb} all timers"));
        return;
    }
    let names: Vec<_> = TimerId::ALL
        .iter()
        .filter(|&&id| t.contains(id))
        .map(|id| id.name())
        .collect();
    out.push(alloc::format!("{verb} {}", names.join("+")));
}

fn reason(r: Option<bookend_wire::Reason>) -> String {
    match r {
        Some(r) => alloc::format!("{r}"),
        None => String::from("reason, data"),
    }
}

/// The effects of `row`, in execution order, as one line: what a reader of
/// `docs/session-states.md` sees in each cell.
pub fn effects_text(row: &Row) -> String {
    let mut out = Vec::new();
    match row.discard {
        Discard::Nothing => {}
        Discard::Unsent => out.push(String::from("discard unsent")),
        Discard::All => out.push(String::from("discard all unsent")),
        Discard::AllAndUnread => out.push(String::from("discard all unsent+unread")),
        Discard::Both => out.push(String::from("discard unsent+unread")),
        Discard::TransportGone => out.push(String::from("transport gone")),
        Discard::TransportGoneAndUnread => out.push(String::from("transport gone, discard unread")),
    }
    match row.seal {
        Seal::Keep | Seal::AfterConnect => {}
        Seal::ByProposal => out.push(String::from("seal if proposed and willing")),
        Seal::ByGrant => out.push(String::from("seal if granted")),
    }
    if let Some(s) = row.send {
        out.push(match s {
            Control::Connect => String::from("send CONNECT"),
            Control::Accept => String::from("send ACCEPT"),
            Control::Reject(r) => alloc::format!("send REJECT({})", reason(r)),
            Control::Disconnect => String::from("send DISCONNECT"),
            Control::Abort(r) => alloc::format!("send ABORT({})", reason(r)),
            Control::Ping => String::from("send PING"),
        });
    }
    if row.seal == Seal::AfterConnect {
        out.push(String::from("then seal if proposing"));
    }
    match row.transport {
        Some(Transport::Fin) => out.push(String::from("FIN")),
        Some(Transport::Rst) => out.push(String::from("RST")),
        None => {}
    }
    timers(&mut out, "clear", row.clear);
    timers(&mut out, "arm", row.arm);
    if let Some(p) = row.post {
        out.push(match p {
            Post::ConnectRequest => String::from("post ConnectRequest"),
            Post::Connected => String::from("post Connected, Writable"),
            Post::Writable => String::from("post Writable"),
            Post::Refused => String::from("post Refused"),
            Post::PeerDisconnected => String::from("post PeerDisconnected"),
            Post::Closed(end) => alloc::format!("post Closed({})", end_text(end)),
        });
    }
    if out.is_empty() {
        String::from("—")
    } else {
        out.join("; ")
    }
}

fn end_text(end: End) -> String {
    match end {
        End::TimedOut(t) => alloc::format!("TimedOut {t:?}"),
        End::AbortedLocallyFor(r) => alloc::format!("AbortedLocally {r}"),
        other => alloc::format!("{other:?}"),
    }
}

fn next_text(state: State, row: &Row) -> State {
    match row.next {
        Next::Same => state,
        Next::To(s) => s,
    }
}

/// The transition table as text: for every state, every input's next state
/// and effects, or `-` where the input is illegal. Used by the snapshot test.
pub fn table_text() -> String {
    let mut out = String::new();
    for s in State::ALL {
        let _ = writeln!(out, "{s}");
        for i in Input::ALL {
            match super::row(s, i) {
                Some(row) => {
                    let _ = writeln!(
                        out,
                        "    {i:?} -> {}: {}",
                        next_text(s, row),
                        effects_text(row)
                    );
                }
                None => {
                    let _ = writeln!(out, "    {i:?} -");
                }
            }
        }
    }
    out
}

/// A Markdown table of every legal cell, state by state: what
/// `docs/session-states.md` and `docs/protocol.md` §5.3 show.
pub fn markdown_table() -> String {
    let mut out = String::from("| state | input | next state | effects, in order |\n");
    out.push_str("|-------|-------|------------|-------------------|\n");
    for s in State::ALL {
        for i in Input::ALL {
            if let Some(row) = super::row(s, i) {
                let _ = writeln!(
                    out,
                    "| {s} | {i:?} | {} | {} |",
                    next_text(s, row),
                    effects_text(row)
                );
            }
        }
    }
    out
}

/// A Mermaid state diagram of the table: one edge per (from, to) pair,
/// labelled with every input that takes it. Self-loops are left out to keep
/// the picture readable; the table lists them.
pub fn mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    let _ = writeln!(out, "    [*] --> IDLE: caller");
    let _ = writeln!(out, "    [*] --> AWAIT_CONNECT: callee");
    for from in State::ALL {
        for to in State::ALL {
            if from == to {
                continue;
            }
            let labels: Vec<_> = Input::ALL
                .iter()
                .filter(|&&i| super::next(from, i) == Some(to))
                .map(|i| alloc::format!("{i:?}"))
                .collect();
            if !labels.is_empty() {
                let _ = writeln!(out, "    {from} --> {to}: {}", labels.join(", "));
            }
        }
    }
    let _ = writeln!(out, "    CLOSED --> [*]");
    out
}
