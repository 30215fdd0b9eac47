use super::*;

#[test]
fn closed_is_terminal() {
    for i in Input::ALL {
        assert!(
            matches!(next(State::Closed, i), None | Some(State::Closed)),
            "{i:?} leaves CLOSED"
        );
    }
}

#[test]
fn every_live_state_can_be_aborted_and_reset() {
    for s in State::ALL {
        if s == State::Closed {
            continue;
        }
        assert_eq!(next(s, Input::AppAbort), Some(State::Closed), "{s}");
        assert_eq!(next(s, Input::RecvRst), Some(State::Closed), "{s}");
        assert_eq!(next(s, Input::TransportTimeout), Some(State::Closed), "{s}");
    }
}

/// The states reachable, through any rows, from those `start` picks
/// (themselves included), indexed by state.
fn reachable_from(start: impl Fn(State) -> bool) -> [bool; State::ALL.len()] {
    let mut reach = State::ALL.map(start);
    let mut changed = true;
    while changed {
        changed = false;
        for s in State::ALL {
            for i in Input::ALL {
                if let Some(to) = next(s, i)
                    && reach[s as usize]
                    && !reach[to as usize]
                {
                    reach[to as usize] = true;
                    changed = true;
                }
            }
        }
    }
    reach
}

#[test]
fn every_state_is_reachable_and_reaches_closed() {
    let reach = reachable_from(|s| matches!(s, State::Idle | State::AwaitConnect));
    assert!(reach.iter().all(|&r| r), "unreachable state");
    // Every non-terminal state has a path to CLOSED that needs no peer
    // cooperation (a timer or the application), so nothing waits forever.
    for s in State::ALL {
        if s == State::Closed {
            continue;
        }
        let local = [
            Input::AppAbort,
            Input::LingerTimer,
            Input::ConnectTimer,
            Input::HandshakeTimer,
        ];
        assert!(
            local.iter().any(|&i| next(s, i) == Some(State::Closed)),
            "{s} cannot end locally"
        );
    }
}

/// Every row that enters CLOSED from a live state posts `Closed` exactly
/// there, and no other row posts it: "Closed is the last event, exactly once".
#[test]
fn closed_is_posted_exactly_on_entering_closed() {
    for s in State::ALL {
        for i in Input::ALL {
            let Some(r) = row(s, i) else { continue };
            let enters = s != State::Closed && next(s, i) == Some(State::Closed);
            let posts = matches!(r.post, Some(Post::Closed(_)));
            assert_eq!(enters, posts, "{s} {i:?}");
            if enters {
                assert!(r.clear == Timers::ALL_BUT_FLUSH, "{s} {i:?} leaves timers");
            }
        }
    }
}

/// A timer a row arms can always fire or be cleared: in every state the
/// armed timer survives into, its input has a row.
#[test]
fn armed_timers_have_rows_where_they_can_fire() {
    for s in State::ALL {
        for i in Input::ALL {
            let Some(r) = row(s, i) else { continue };
            let to = next(s, i).unwrap_or(s);
            for t in TimerId::ALL {
                if r.arm.contains(t) {
                    assert!(row(to, t.input()).is_some(), "{t:?} armed into {to}");
                }
            }
        }
    }
}

/// No ABORT or other frame after our FIN (§5.4), and FIN or RST only once.
#[test]
fn nothing_is_sent_after_our_fin() {
    for s in [
        State::Closing,
        State::Rejecting,
        State::Refused,
        State::Closed,
    ] {
        for i in Input::ALL {
            if let Some(r) = row(s, i) {
                assert!(r.send.is_none(), "{s} {i:?} sends after FIN");
                assert_ne!(r.transport, Some(Transport::Fin), "{s} {i:?} FIN twice");
            }
        }
    }
}

#[test]
fn every_event_in_every_state_snapshot() {
    insta::assert_snapshot!("transition_table", table_text());
}

#[test]
fn checked_in_docs_are_current() {
    let doc = include_str!("../../../../docs/session-states.md");
    assert!(
        doc.contains(mermaid().as_str()) && doc.contains(markdown_table().as_str()),
        "docs/session-states.md is stale; regenerate with `ci/regen-state-docs`"
    );
    // protocol.md §5.3 must be complete on its own: it carries the same table.
    let spec = include_str!("../../../../docs/protocol.md");
    assert!(
        spec.contains(markdown_table().as_str()),
        "docs/protocol.md §5.3 is stale; regenerate with `ci/regen-state-docs`"
    );
}

/// The timers each state may have armed, by abstract interpretation of the
/// table: a row leaving `from` for `next` leaves what was armed in `from`,
/// less what it clears, plus what it arms. (Only rows arm timers; firing
/// or the data path's restarts never arm one that was stopped.)
fn armed_per_state() -> [Timers; State::ALL.len()] {
    let mut armed = [Timers::NONE; State::ALL.len()];
    loop {
        let mut changed = false;
        for row in TRANSITIONS {
            for &from in row.from {
                let next = match row.next {
                    Next::Same => from,
                    Next::To(s) => s,
                };
                let after = (armed[from as usize].0 & !row.clear.0) | row.arm.0;
                let n = &mut armed[next as usize].0;
                if *n | after != *n {
                    *n |= after;
                    changed = true;
                }
            }
        }
        if !changed {
            return armed;
        }
    }
}

/// The session keeps its seven timers in three slots ([`TimerId::slot`]):
/// that is only right if no state can have two timers of one slot armed,
/// and no row arms a timer while another of its slot may run (issue 10).
#[test]
fn timers_sharing_a_slot_are_never_armed_together() {
    let armed = armed_per_state();
    for s in State::ALL {
        for a in TimerId::ALL {
            for b in TimerId::ALL {
                let both = armed[s as usize].contains(a) && armed[s as usize].contains(b);
                assert!(
                    !(a != b && a.slot() == b.slot() && both),
                    "{s}: {} and {} share a slot and may both be armed",
                    a.name(),
                    b.name()
                );
            }
        }
    }
    for row in TRANSITIONS {
        for &from in row.from {
            let left = armed[from as usize].0 & !row.clear.0;
            for a in TimerId::ALL {
                for b in TimerId::ALL {
                    let overwrites = row.arm.contains(a) && left & (1 << b as u8) != 0;
                    assert!(
                        !(a != b && a.slot() == b.slot() && overwrites),
                        "{from} {:?}: arms {} while {} may hold its slot",
                        row.input,
                        a.name(),
                        b.name()
                    );
                }
            }
        }
    }
    // The analysis sees what the table arms: the handshake timers, linger
    // and the liveness pair each in their states.
    assert!(armed[State::ConnectSent as usize].contains(TimerId::Connect));
    assert!(armed[State::LocalDisconnected as usize].contains(TimerId::Linger));
    assert!(armed[State::LocalDisconnected as usize].contains(TimerId::Idle));
    assert!(armed[State::Closed as usize].contains(TimerId::AbortFlush));
}

/// RFC 9293 §3.10.4: a close with received data unread resets, so the peer
/// never believes its data was read. Data can be unread in every state
/// reachable from one where DATA is received (it stays queued until read);
/// in each of those, close() with data unread has its own row (no fallback
/// to the plain close), and that row ends the session with ABORT or RST,
/// never gracefully.
#[test]
fn close_with_unread_data_never_ends_gracefully() {
    let unread = reachable_from(|s| row(s, Input::RecvData).is_some());
    for s in State::ALL {
        assert_eq!(
            s.may_hold_data(),
            unread[s as usize] && s != State::Closed,
            "{s}: State::may_hold_data disagrees with the table"
        );
    }
    let mut checked = 0;
    for s in State::ALL {
        if !unread[s as usize] || s == State::Closed {
            continue;
        }
        checked += 1;
        let r = row(s, Input::AppCloseUnread)
            .unwrap_or_else(|| panic!("{s}: close() with unread data has no row"));
        assert_eq!(next(s, Input::AppCloseUnread), Some(State::Closed), "{s}");
        assert_eq!(r.transport, Some(Transport::Rst), "{s}: no RST");
        assert!(
            matches!(r.post, Some(Post::Closed(e)) if e != End::Graceful),
            "{s}: {:?}",
            r.post
        );
    }
    // OPEN, LOCAL_DISCONNECTED, PEER_DISCONNECTED and CLOSING.
    assert_eq!(checked, 4);
}

/// §2.5 as a column: the rows that decide sealing are exactly those that
/// send or receive the proposal or the grant, and each decides before the
/// frame it answers with (the CONNECT itself is never sealed: its row seals
/// only what follows it).
#[test]
fn integrity_is_decided_by_the_rows_that_carry_proposal_and_grant() {
    for row in TRANSITIONS {
        let want = match row.input {
            Input::AppConnect => Seal::AfterConnect,
            Input::RecvConnect | Input::RecvUnacceptableConnect => Seal::ByProposal,
            Input::AppAccept | Input::RecvAccept | Input::RecvUnacceptableAccept => Seal::ByGrant,
            _ => Seal::Keep,
        };
        assert_eq!(row.seal, want, "{:?} in {:?}", row.input, row.from);
        if row.send == Some(Control::Accept) {
            assert_eq!(row.seal, Seal::ByGrant, "an ACCEPT sealed by its grant");
        }
    }
}
