//! Fuzzes the whole session machine: one `Session` of either role, driven by an
//! arbitrary sequence of received bytes (in arbitrary chunks), application
//! commands, timer firings and transport events. Each byte sequence may start
//! with a valid handshake so the fuzzer reaches the connected states at once.
//!
//! Checked after every operation, beyond "no panic, no hang": every buffer is
//! within its bound; `Closed` is reported at most once and nothing follows it;
//! FIN and RST are each requested at most once. With `provided`, the session
//! runs over buffers of exactly the sizes its configuration needs
//! (`SessionBuffers`), whose queues assert (debug assertions are on in fuzz
//! builds) that nothing asks them for more.
#![no_main]

use bookend_session::{
    Config, Event, Instant, Integrity, Mode, Reason, Role, Session, TransportAction,
    TransportClosed,
};
use bookend_wire::{AcceptRepr, ConnectRepr, FrameRepr, ReasonRepr, VERSION};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Bytes(Vec<u8>),
    /// A well-formed frame, sealed (CRC-32C trailer) when the flag says,
    /// optionally with one bit flipped, fed whole or in two pieces.
    Frame {
        kind: u8,
        eom: bool,
        data: Vec<u8>,
        sealed: bool,
        flip: Option<u16>,
        split: Option<u16>,
    },
    Advance(u16),
    Fin,
    Reset,
    TimedOut,
    Connect(Option<Vec<u8>>),
    Accept(Option<Vec<u8>>),
    Reject(u16, Option<Vec<u8>>),
    Defer,
    Send(u16),
    Recv(u16),
    SendMessage(u16),
    RecvMessage(u16),
    SendDisconnect(Option<Vec<u8>>),
    RecvDisconnect(u8),
    Close,
    Abort(u16, Option<Vec<u8>>),
    Transmit(u16),
    SendDirect(u16, u16),
    RecvDirect(Vec<u8>, u16),
    /// Moves empty parts to the spare pool, as a driver does when quiet.
    Trim,
    /// Takes parts from the spare pool, as a driver does before working.
    Supply,
}

#[derive(Debug, Arbitrary)]
struct Input {
    callee: bool,
    message_mode: bool,
    /// Prefix the first Bytes op with a valid CONNECT (callee) or ACCEPT (caller).
    handshake: bool,
    small_limits: bool,
    /// Ask for the CRC-32C trailer (and seal the handshake prefix).
    integrity: bool,
    /// Over provided buffers of exactly the configuration's sizes.
    provided: bool,
    ops: Vec<Op>,
}

/// Provided buffers given back at the end of each run, for the next: the
/// storage is `&'static mut`, leaked once per size, and stays reachable
/// from this global (so that the leak sanitizer does not count it).
static STORAGE: std::sync::Mutex<Vec<bookend_session::SessionBuffers>> =
    std::sync::Mutex::new(Vec::new());

fn exact_buffers(config: &Config) -> bookend_session::SessionBuffers {
    let need = bookend_session::BufferSizes::for_config(config);
    let pooled = {
        let mut s = STORAGE.lock().unwrap();
        s.iter()
            .position(|b| b.sizes() == need)
            .map(|i| s.swap_remove(i))
    };
    pooled.unwrap_or_else(|| {
        let storage = Box::leak(vec![0u8; need.total()].into_boxed_slice());
        bookend_session::SessionBuffers::new(storage, config).unwrap()
    })
}

fn frame(repr: FrameRepr<'_>, sealed: bool) -> Vec<u8> {
    if sealed {
        let mut b = vec![0; repr.sealed_buffer_len()];
        repr.emit_sealed(&mut b).unwrap();
        return b;
    }
    let mut b = vec![0; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

struct Watch {
    closed: bool,
    fin: u32,
    rst: u32,
}

fn drain(s: &mut Session, now: Instant, w: &mut Watch, max: usize) {
    let mut buf = vec![0u8; max.max(1)];
    while s.poll_transmit(now, &mut buf) > 0 {}
    while let Some(a) = s.poll_transport_action() {
        match a {
            TransportAction::Fin => w.fin += 1,
            TransportAction::Reset => w.rst += 1,
        }
    }
    assert!(w.fin <= 1 && w.rst <= 1, "FIN or RST requested twice");
    while let Some(e) = s.poll_event() {
        assert!(!w.closed, "event after Closed: {e:?}");
        if matches!(e, Event::Closed(_)) {
            w.closed = true;
        }
    }
    let u = s.buffer_usage();
    assert!(u.rx_partial <= u.rx_partial_max, "{u:?}");
    assert!(u.rx_queued <= u.rx_queued_max, "{u:?}");
    assert!(u.tx <= u.tx_max, "{u:?}");
}

fuzz_target!(|input: Input| {
    let mut config = Config::default();
    let mode = if input.message_mode {
        Mode::Message
    } else {
        Mode::Stream
    };
    config.options.mode = mode;
    if input.integrity {
        config.options.integrity = Integrity::Crc32c;
    }
    if input.small_limits {
        config.options.max_frame_size = 64;
        config.options.max_message_size = 256;
        config.options.max_connect_data = 16;
        config.options.max_disconnect_data = 16;
        config.recv_buffer = 1024;
        config.send_buffer = 512;
    }
    let mut now = Instant::ZERO;
    let mut spares = bookend_session::Spares::new(2);
    let mut s = if input.callee {
        Session::callee(config.clone(), 1, now).unwrap()
    } else {
        Session::caller(config.clone(), 1).unwrap()
    };
    if input.provided {
        s.provide_buffers(exact_buffers(&config)).unwrap();
    }
    if !input.callee {
        let _ = s.connect(now, Some(b"fuzz"), config.options);
    }
    assert_eq!(s.role() == Role::Callee, input.callee);
    let mut prefix = if !input.handshake {
        Vec::new()
    } else if input.callee {
        frame(
            FrameRepr::Connect(ConnectRepr {
                min_version: VERSION,
                max_version: VERSION,
                options: config.options.to_repr(),
                data: Some(b"x"),
            }),
            input.integrity,
        )
    } else {
        frame(
            FrameRepr::Accept(AcceptRepr {
                version: VERSION,
                options: config.options.to_repr(),
                data: None,
            }),
            input.integrity,
        )
    };
    let mut w = Watch {
        closed: false,
        fin: 0,
        rst: 0,
    };
    let mut grant = config.options;
    let mut direct = false;
    let mut buf = vec![0u8; 70_000];
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Bytes(mut b) => {
                if !prefix.is_empty() {
                    prefix.extend_from_slice(&b);
                    b = std::mem::take(&mut prefix);
                }
                let n = s.handle_bytes(now, &b);
                assert!(n <= b.len());
                // Pushback only ever waits for the application: something
                // must be readable, or the session could deadlock.
                if n < b.len() && !direct {
                    let u = s.buffer_usage();
                    assert!(
                        s.recv_queue() > 0 || u.rx_messages > 0,
                        "held back with nothing to read: {u:?}"
                    );
                }
            }
            Op::Frame {
                kind,
                eom,
                data,
                sealed,
                flip,
                split,
            } => {
                let d = &data[..data.len().min(2048)];
                let repr = match kind % 5 {
                    0 => FrameRepr::Data {
                        end_of_message: eom,
                        payload: d,
                    },
                    1 => FrameRepr::Disconnect {
                        data: eom.then_some(d),
                    },
                    2 => FrameRepr::Ping,
                    3 => FrameRepr::Abort(ReasonRepr {
                        reason: Reason(0x8001),
                        data: eom.then_some(d),
                    }),
                    _ => FrameRepr::Unknown {
                        frame_type: 0x40,
                        len: d.len() as u32,
                    },
                };
                let mut b = frame(repr, sealed);
                if let Some(f) = flip {
                    let bit = usize::from(f) % (b.len() * 8);
                    b[bit / 8] ^= 1 << (bit % 8);
                }
                if !prefix.is_empty() {
                    prefix.extend_from_slice(&b);
                    b = std::mem::take(&mut prefix);
                }
                let cut = split.map_or(b.len(), |c| usize::from(c) % (b.len() + 1));
                for part in [&b[..cut], &b[cut..]] {
                    let n = if direct {
                        let mut out = vec![0u8; 700];
                        s.recv_direct(now, part, &mut out).0
                    } else {
                        s.handle_bytes(now, part)
                    };
                    assert!(n <= part.len());
                }
            }
            Op::Advance(ms) => {
                now = now + std::time::Duration::from_millis(u64::from(ms) * 10);
                s.handle_timeout(now);
            }
            Op::Fin => s.handle_transport_closed(now, TransportClosed::Fin),
            Op::Reset => s.handle_transport_closed(now, TransportClosed::Reset),
            Op::TimedOut => s.handle_transport_closed(now, TransportClosed::TimedOut),
            Op::Connect(d) => {
                let _ = s.connect(now, d.as_deref(), config.options);
            }
            Op::Accept(d) => {
                let _ = s.accept(now, d.as_deref(), grant);
            }
            Op::Reject(r, d) => {
                let _ = s.reject(now, Reason(r), d.as_deref());
            }
            Op::Defer => {
                let _ = s.defer();
            }
            Op::Send(n) => {
                let _ = s.send(&buf[..usize::from(n)]);
            }
            Op::Recv(n) => {
                let _ = s.recv(&mut buf[..usize::from(n)]);
            }
            Op::SendMessage(n) => {
                let _ = s.send_message(&buf[..usize::from(n)]);
            }
            Op::RecvMessage(n) => {
                let _ = s.recv_message(&mut buf[..usize::from(n)]);
            }
            Op::SendDisconnect(d) => {
                let _ = s.send_disconnect(now, d.as_deref());
            }
            Op::RecvDisconnect(n) => {
                let _ = s.recv_disconnect(&mut buf[..usize::from(n)]);
            }
            Op::Close => s.close(now),
            Op::Trim => s.trim(&mut spares),
            Op::Supply => s.supply(&mut spares),
            Op::Abort(r, d) => {
                let _ = s.abort(now, Reason(r), d.as_deref());
            }
            Op::SendDirect(n, room) => {
                let mut out = vec![0u8; usize::from(room)];
                if let Ok((taken, written)) = s.send_direct(now, &buf[..usize::from(n)], &mut out) {
                    assert!(taken <= usize::from(n) && written <= out.len());
                    assert!(taken == 0 || written > taken, "every frame has a header");
                }
            }
            Op::RecvDirect(wire, room) => {
                s.set_direct_receive(true);
                direct = true;
                let mut out = vec![0u8; usize::from(room)];
                let (consumed, written) = s.recv_direct(now, &wire, &mut out);
                assert!(consumed <= wire.len() && written <= out.len());
            }
            Op::Transmit(n) => {
                drain(&mut s, now, &mut w, usize::from(n));
            }
        }
        // Pick up the grant the moment a request arrives, as an application would.
        while let Some(e) = s.poll_event() {
            assert!(!w.closed, "event after Closed: {e:?}");
            match e {
                Event::ConnectRequest(r) => grant = r.grant,
                Event::Closed(_) => w.closed = true,
                _ => {}
            }
        }
        drain(&mut s, now, &mut w, 1460);
    }
    if let Some(b) = s.take_buffers() {
        STORAGE.lock().unwrap().push(b);
    }
});
