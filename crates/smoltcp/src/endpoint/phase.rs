//! Who a connection belongs to, as a table: every change of a connection's
//! [`Phase`] is a row here, with the counter it bumps, so that no phase is
//! assigned and no counter forgotten anywhere else (the session's own life
//! is its transition table; this is the endpoint's around it).
//!
//! `docs/endpoint-phases.md` is generated from [`ROWS`] (`ci/regen-state-docs`)
//! and a snapshot test keeps the two in step.

use alloc::string::String;
use core::fmt::Write as _;

use super::Stats;

/// Who a connection belongs to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    /// Incoming, its SYN-ACK held by SO_CONDITIONAL_ACCEPT's `Defer` (only
    /// with the `conditional-accept` feature). Its deadline is `born +
    /// syn_defer_timeout`, not stored.
    #[cfg_attr(not(feature = "conditional-accept"), allow(dead_code))]
    SynPaused,
    /// Incoming, not yet accepted: counts against the listener's bounds.
    Pending,
    /// Incoming and refused by us before the application owned it.
    Refused,
    /// The application's (outgoing, or accepted).
    Owned,
    /// The application closed its handle: lingering in the background.
    Released,
}

/// What moves a connection from one phase to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PhaseEvent {
    /// SO_CONDITIONAL_ACCEPT's `Accept`: the SYN-ACK goes out.
    SynReleased,
    /// SO_CONDITIONAL_ACCEPT's `Refuse`, or the SYN-defer time ran out: RST.
    SynRefused,
    /// The caller reset while TCP was still in SYN-RECEIVED (a SYN scan, a
    /// caller that gave up); its session ends next, as an undecided one.
    HalfOpenReset,
    /// Admission control: a source's oldest beyond its share (§6.4 rule 2).
    EvictedBeyondShare,
    /// Admission control: the oldest over the total, or past the loaded
    /// handshake time (§6.4 rules 3 and 4).
    Evicted,
    /// REJECT(`BUSY`): undecided requests at their bound (§6.4 rule 5).
    Busy,
    /// No provided session buffers were free when the listener took the
    /// connection (`SessionBuffering::Provided`): RST.
    NoSessionBuffers,
    /// Accepted by the condition function or `Endpoint::accept`.
    Accepted,
    /// Rejected by the condition function or `Endpoint::reject` (or the
    /// condition function's accept, refused by the session, became a
    /// REJECT).
    Rejected,
    /// Its session ended before anybody decided: the caller left or reset,
    /// the handshake or decision timer fired, or the session itself refused
    /// the CONNECT (a REJECT the application never saw: data too large, an
    /// option it cannot serve).
    EndedUndecided,
    /// The application closed or aborted its handle.
    HandleReleased,
}

/// The counter a row bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// None.
    Nothing,
    /// [`Stats::refused`].
    Refused,
    /// [`Stats::reset_in_syn_received`].
    ResetInSynReceived,
    /// [`Stats::per_source_refused`].
    PerSource,
    /// [`Stats::evicted`].
    Evicted,
    /// [`Stats::busy`].
    Busy,
    /// [`Stats::no_session_buffers`].
    NoSessionBuffers,
}

/// One cell of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// The phase it applies in.
    pub(crate) from: Phase,
    /// What happened.
    pub(crate) on: PhaseEvent,
    /// The phase after.
    pub(crate) to: Phase,
    /// The counter bumped.
    pub(crate) count: Count,
}

const fn row(from: Phase, on: PhaseEvent, to: Phase, count: Count) -> Row {
    Row {
        from,
        on,
        to,
        count,
    }
}

use Count as C;
use Phase as P;
use PhaseEvent as E;

/// The whole behaviour. A connection is created `SynPaused` or `Pending`
/// (taken from a listener) or `Owned` (`Endpoint::connect`); an event with
/// no row in its phase leaves it where it is.
// A table, laid out as one: one row per line.
#[rustfmt::skip]
pub(crate) const ROWS: &[Row] = &[
    row(P::SynPaused, E::SynReleased,        P::Pending,  C::Nothing),
    row(P::SynPaused, E::SynRefused,         P::Refused,  C::Refused),
    row(P::SynPaused, E::HalfOpenReset,      P::Pending,  C::ResetInSynReceived),
    row(P::SynPaused, E::EvictedBeyondShare, P::Refused,  C::PerSource),
    row(P::SynPaused, E::Evicted,            P::Refused,  C::Evicted),
    row(P::SynPaused, E::NoSessionBuffers,   P::Refused,  C::NoSessionBuffers),
    row(P::Pending,   E::HalfOpenReset,      P::Pending,  C::ResetInSynReceived),
    row(P::Pending,   E::EvictedBeyondShare, P::Refused,  C::PerSource),
    row(P::Pending,   E::Evicted,            P::Refused,  C::Evicted),
    row(P::Pending,   E::Busy,               P::Refused,  C::Busy),
    row(P::Pending,   E::NoSessionBuffers,   P::Refused,  C::NoSessionBuffers),
    row(P::Pending,   E::Accepted,           P::Owned,    C::Nothing),
    row(P::Pending,   E::Rejected,           P::Refused,  C::Refused),
    row(P::Pending,   E::EndedUndecided,     P::Refused,  C::Refused),
    row(P::Pending,   E::HandleReleased,     P::Released, C::Nothing),
    row(P::Owned,     E::HandleReleased,     P::Released, C::Nothing),
    // A refused request stays refused: it was never the application's.
    row(P::Refused,   E::HandleReleased,     P::Refused,  C::Nothing),
    // A caller lost in SYN-RECEIVED is counted in every phase it can meet
    // a connection in (one refused or released may still hold its socket).
    row(P::Refused,   E::HalfOpenReset,      P::Refused,  C::ResetInSynReceived),
    row(P::Released,  E::HalfOpenReset,      P::Released, C::ResetInSynReceived),
];

/// The row for `on` in `from`, if any.
pub(crate) fn lookup(from: Phase, on: PhaseEvent) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.from == from && r.on == on)
}

/// Applies `on` to `phase`, bumping the row's counter in `stats`; says
/// whether a row applied (without one, nothing changes).
pub(crate) fn apply(phase: &mut Phase, on: PhaseEvent, stats: &mut Stats) -> bool {
    let Some(r) = lookup(*phase, on) else {
        return false;
    };
    *phase = r.to;
    match r.count {
        Count::Nothing => {}
        Count::Refused => stats.refused += 1,
        Count::ResetInSynReceived => stats.reset_in_syn_received += 1,
        Count::PerSource => stats.per_source_refused += 1,
        Count::Evicted => stats.evicted += 1,
        Count::Busy => stats.busy += 1,
        Count::NoSessionBuffers => stats.no_session_buffers += 1,
    }
    true
}

fn count_name(c: Count) -> &'static str {
    match c {
        Count::Nothing => "",
        Count::Refused => "refused",
        Count::ResetInSynReceived => "reset_in_syn_received",
        Count::PerSource => "per_source_refused",
        Count::Evicted => "evicted",
        Count::Busy => "busy",
        Count::NoSessionBuffers => "no_session_buffers",
    }
}

/// The table as Markdown, then as a Mermaid state diagram: the body of
/// `docs/endpoint-phases.md`.
pub(crate) fn document() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| phase | event | next phase | counter |");
    let _ = writeln!(s, "|-------|-------|------------|---------|");
    for r in ROWS {
        let count = count_name(r.count);
        let count = if count.is_empty() {
            String::from("-")
        } else {
            alloc::format!("`{count}`")
        };
        let _ = writeln!(s, "| {:?} | {:?} | {:?} | {count} |", r.from, r.on, r.to);
    }
    let _ = writeln!(s, "\n```mermaid\nstateDiagram-v2");
    let _ = writeln!(s, "    [*] --> SynPaused: SYN, TCP condition defers");
    let _ = writeln!(s, "    [*] --> Pending: SYN taken");
    let _ = writeln!(s, "    [*] --> Owned: Endpoint::connect");
    for r in ROWS.iter().filter(|r| r.from != r.to) {
        let _ = writeln!(s, "    {:?} --> {:?}: {:?}", r.from, r.to, r.on);
    }
    let _ = writeln!(s, "    Refused --> [*]: slot freed");
    let _ = writeln!(s, "    Released --> [*]: slot freed");
    let _ = writeln!(s, "```");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is unambiguous: one row per (phase, event).
    #[test]
    fn one_row_per_phase_and_event() {
        for (i, a) in ROWS.iter().enumerate() {
            for b in &ROWS[i + 1..] {
                assert!(
                    !(a.from == b.from && a.on == b.on),
                    "two rows for {:?} on {:?}",
                    a.from,
                    a.on
                );
            }
        }
    }

    /// Only the listener's phases reach a refusal, and nothing leaves the
    /// application's hands except by its own close.
    #[test]
    fn owned_connections_leave_only_by_the_applications_close() {
        for r in ROWS.iter().filter(|r| r.from == Phase::Owned) {
            assert_eq!(r.on, PhaseEvent::HandleReleased, "{r:?}");
        }
        for r in ROWS.iter().filter(|r| r.to == Phase::Owned) {
            assert_eq!(r.from, Phase::Pending, "{r:?}");
        }
    }

    /// Every way a request is refused before the application owned it is
    /// counted, exactly once (one counter per row).
    #[test]
    fn every_refusal_is_counted() {
        for r in ROWS
            .iter()
            .filter(|r| r.to == Phase::Refused && r.from != Phase::Refused)
        {
            assert_ne!(r.count, Count::Nothing, "{r:?} counts nothing");
        }
        let mut stats = Stats::default();
        let mut p = Phase::Pending;
        assert!(apply(&mut p, PhaseEvent::EndedUndecided, &mut stats));
        assert_eq!((p, stats.refused), (Phase::Refused, 1));
        assert!(apply(&mut p, PhaseEvent::HandleReleased, &mut stats));
        assert_eq!(p, Phase::Refused, "a refused request stays refused");
        assert!(
            !apply(&mut p, PhaseEvent::Accepted, &mut stats),
            "no row: no change"
        );
        assert_eq!(p, Phase::Refused);
    }

    /// A caller lost in SYN-RECEIVED is counted whatever the phase of the
    /// connection it met (one already refused or released may still hold
    /// its socket), and the phase stays.
    #[test]
    fn a_lost_caller_is_counted_in_every_phase_it_can_meet() {
        for from in [
            Phase::SynPaused,
            Phase::Pending,
            Phase::Refused,
            Phase::Released,
        ] {
            let mut stats = Stats::default();
            let mut p = from;
            assert!(
                apply(&mut p, PhaseEvent::HalfOpenReset, &mut stats),
                "{from:?}"
            );
            assert_eq!(stats.reset_in_syn_received, 1, "{from:?}");
            let stays = if from == Phase::SynPaused {
                Phase::Pending
            } else {
                from
            };
            assert_eq!(p, stays);
        }
    }

    /// The generated document (`docs/endpoint-phases.md`) as reviewed.
    #[test]
    fn phase_table_snapshot() {
        insta::assert_snapshot!(document());
    }

    /// The checked-in document is the table's.
    #[test]
    fn checked_in_doc_is_current() {
        let doc = include_str!("../../../../docs/endpoint-phases.md");
        assert!(
            doc.contains(document().as_str()),
            "docs/endpoint-phases.md is stale; regenerate with `ci/regen-state-docs`"
        );
    }
}
