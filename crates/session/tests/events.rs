//! The network events the application sees, in Winsock's terms: FD_READ
//! (`Readable`) announces data that can be read when it is polled, and after
//! FD_CLOSE (`PeerDisconnected`) only for data that arrived before the
//! peer's DISCONNECT and is still unread (`Event`'s contract; the model
//! check's event-legality property, `tests/model.rs`).

use bookend_session::{Config, Event, Instant, Mode, Session};

const T: Instant = Instant::ZERO;

fn config(mode: Mode) -> Config {
    let mut c = Config::default();
    c.options.mode = mode;
    c
}

/// A caller and a callee connected in `mode`, every event so far taken.
fn pair(mode: Mode) -> (Session, Session) {
    pair_with(config(mode))
}

/// A caller and a callee of `config` connected, every event so far taken.
fn pair_with(config: Config) -> (Session, Session) {
    let mut caller = Session::caller(config.clone(), 1).unwrap();
    let mut callee = Session::callee(config.clone(), 2, T).unwrap();
    let mut buf = vec![0u8; 4096];
    caller.connect(T, None, config.options).unwrap();
    let n = caller.poll_transmit(T, &mut buf);
    callee.handle_bytes(T, &buf[..n]);
    let Some(Event::ConnectRequest(req)) = callee.poll_event() else {
        panic!("a request")
    };
    callee.accept(T, None, req.grant).unwrap();
    let n = callee.poll_transmit(T, &mut buf);
    caller.handle_bytes(T, &buf[..n]);
    while caller.poll_event().is_some() {}
    while callee.poll_event().is_some() {}
    (caller, callee)
}

/// Everything `from` has queued, into `to` in one delivery.
fn deliver(from: &mut Session, to: &mut Session) {
    let mut buf = vec![0u8; 4096];
    let n = from.poll_transmit(T, &mut buf);
    assert_eq!(to.handle_bytes(T, &buf[..n]), n);
}

/// A callee to which two messages and the DISCONNECT arrived in one
/// delivery, its first event (FD_READ) taken.
fn two_messages_and_disconnect() -> Session {
    let (mut caller, mut callee) = pair(Mode::Message);
    caller.send_message(b"01").unwrap();
    caller.send_message(b"34").unwrap();
    caller.send_disconnect(T, None).unwrap();
    deliver(&mut caller, &mut callee);
    assert_eq!(callee.poll_event(), Some(Event::Readable));
    callee
}

/// Two messages and the DISCONNECT arrive together; the application, told
/// FD_READ, reads both before it looks at the next event. Reading the first
/// re-posted FD_READ (a message was left), queued behind FD_CLOSE; once the
/// second is read nothing is left, and that FD_READ must not be delivered
/// after FD_CLOSE announcing data that is not there (found by the model
/// check at two messages).
#[test]
fn a_read_that_drains_everything_withdraws_its_queued_fd_read() {
    let mut callee = two_messages_and_disconnect();
    let mut buf = [0u8; 8];
    assert_eq!(callee.recv_message(&mut buf), Ok(2));
    assert_eq!(callee.recv_message(&mut buf), Ok(2));
    let rest: Vec<Event> = std::iter::from_fn(|| callee.poll_event()).collect();
    assert_eq!(rest, [Event::PeerDisconnected]);
}

/// The same in stream mode: a read that leaves bytes re-posts FD_READ, and
/// the read that takes the rest withdraws it.
#[test]
fn a_stream_read_that_drains_everything_withdraws_its_queued_fd_read() {
    let (mut caller, mut callee) = pair(Mode::Stream);
    caller.send(b"0134").unwrap();
    caller.send_disconnect(T, None).unwrap();
    deliver(&mut caller, &mut callee);
    assert_eq!(callee.poll_event(), Some(Event::Readable));
    let mut buf = [0u8; 2];
    assert_eq!(callee.recv(&mut buf), Ok(2));
    assert_eq!(callee.recv(&mut buf), Ok(2));
    let rest: Vec<Event> = std::iter::from_fn(|| callee.poll_event()).collect();
    assert_eq!(rest, [Event::PeerDisconnected]);
    assert_eq!(
        callee.recv(&mut buf),
        Ok(0),
        "recv returns 0 after FD_CLOSE"
    );
}

/// A read that leaves data keeps its FD_READ, after FD_CLOSE too: the data
/// before the DISCONNECT is still there to read.
#[test]
fn a_read_that_leaves_data_keeps_its_fd_read_after_fd_close() {
    let mut callee = two_messages_and_disconnect();
    let mut buf = [0u8; 8];
    assert_eq!(callee.recv_message(&mut buf), Ok(2));
    let rest: Vec<Event> = std::iter::from_fn(|| callee.poll_event()).collect();
    assert_eq!(rest, [Event::PeerDisconnected, Event::Readable]);
    assert_eq!(callee.recv_message(&mut buf), Ok(2));
}

/// FD_WRITE (`Writable`) comes once a send would take something: in stream
/// mode the send buffer counts frames' headers too, so a buffer with fewer
/// free bytes than a header and one payload byte is still full.
#[test]
fn fd_write_comes_when_a_send_would_take_something() {
    let mut c = Config::default();
    c.send_buffer = 100;
    let (mut caller, _callee) = pair_with(c);
    // Fill the buffer: one frame of header plus payload, then refused.
    let taken = caller.send(&[1u8; 1000]).unwrap();
    assert!(taken < 100);
    assert_eq!(
        caller.send(&[1u8; 10]),
        Err(bookend_session::Error::WouldBlock)
    );
    let overhead = caller.send_queue() - taken;
    // Free fewer bytes than a header and a payload byte: still full.
    let mut out = vec![0u8; overhead];
    assert_eq!(caller.poll_transmit(T, &mut out), overhead);
    assert!(
        !std::iter::from_fn(|| caller.poll_event()).any(|e| matches!(e, Event::Writable)),
        "Writable while a send would take nothing"
    );
    assert_eq!(
        caller.send(&[1u8; 10]),
        Err(bookend_session::Error::WouldBlock)
    );
    // Free the rest: room for a frame, and FD_WRITE.
    let mut out = vec![0u8; 200];
    assert!(caller.poll_transmit(T, &mut out) > 0);
    assert!(std::iter::from_fn(|| caller.poll_event()).any(|e| matches!(e, Event::Writable)));
    assert!(caller.send(&[1u8; 10]).is_ok());
}
