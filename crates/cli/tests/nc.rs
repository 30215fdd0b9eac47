//! `bookend listen` and `bookend connect ADDR` (netcat mode) between two
//! processes over loopback: data both ways on standard input and output,
//! out-of-band data on standard error (text and JSON), refusal with reason
//! and data, and the exit status that says how each session ended.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bookend(args: &[&str], stdin: &[u8]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bookend");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    child
}

fn wait(mut child: Child) -> Output {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback port (bound and released: the listener binds it again).
fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn data_both_ways_with_connect_and_disconnect_data() {
    let addr = format!("127.0.0.1:{}", port());
    let l = bookend(
        &[
            "listen",
            &addr,
            "--data",
            "welcome",
            "--disconnect-data",
            "hex:0000000000000011",
        ],
        b"from the listener\n",
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = bookend(
        &[
            "connect",
            &addr,
            "--data",
            "client-1",
            "--disconnect-data",
            "bye",
        ],
        b"from the caller\n",
    );
    let (c, l) = (wait(c), wait(l));
    let diag = format!(
        "caller: {} / {}\nlistener: {} / {}",
        text(&c.stdout),
        text(&c.stderr),
        text(&l.stdout),
        text(&l.stderr)
    );
    assert_eq!(c.status.code(), Some(0), "{diag}");
    assert_eq!(l.status.code(), Some(0), "{diag}");
    assert_eq!(text(&c.stdout), "from the listener\n", "{diag}");
    assert_eq!(text(&l.stdout), "from the caller\n", "{diag}");
    let (ce, le) = (text(&c.stderr), text(&l.stderr));
    assert!(ce.contains("callee_data=\"welcome\""), "{diag}");
    assert!(
        ce.contains("disconnected data=hex:0000000000000011"),
        "{diag}"
    );
    assert!(le.contains("caller_data=\"client-1\""), "{diag}");
    assert!(le.contains("disconnected data=\"bye\""), "{diag}");
    assert!(
        ce.contains("closed how=graceful") && le.contains("closed how=graceful"),
        "{diag}"
    );
}

#[test]
fn a_refusal_carries_its_reason_and_data_and_exit_status_2() {
    let addr = format!("127.0.0.1:{}", port());
    let l = bookend(
        &["listen", &addr, "--reject", "BUSY:try later", "--json"],
        b"",
    );
    std::thread::sleep(Duration::from_millis(300));
    let c = bookend(&["connect", &addr, "--json"], b"");
    let (c, l) = (wait(c), wait(l));
    let diag = format!("caller: {}\nlistener: {}", text(&c.stderr), text(&l.stderr));
    assert_eq!(c.status.code(), Some(2), "{diag}");
    assert_eq!(l.status.code(), Some(2), "{diag}");
    assert!(
        text(&c.stderr).contains(r#"{"event":"refused","reason":"BUSY","data":"\"try later\""}"#),
        "{diag}"
    );
}

#[test]
fn message_mode_sends_a_message_per_line() {
    let addr = format!("127.0.0.1:{}", port());
    let l = bookend(&["listen", &addr, "--mode", "message"], b"");
    std::thread::sleep(Duration::from_millis(300));
    let c = bookend(
        &["connect", &addr, "--mode", "message"],
        b"one\ntwo\n\nfour\n",
    );
    let (c, l) = (wait(c), wait(l));
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stderr));
    assert_eq!(text(&l.stdout), "one\ntwo\n\nfour\n", "{}", text(&l.stderr));
}

#[test]
fn nothing_listening_is_exit_status_1() {
    let addr = format!("127.0.0.1:{}", port());
    let c = wait(bookend(&["connect", &addr], b""));
    assert_eq!(c.status.code(), Some(1), "{}", text(&c.stderr));
}

/// A session that ends abnormally ends the run at once, even while standard
/// input is still open: the listener's process is killed mid-session (its
/// TCP ends without a DISCONNECT), and the caller exits with a status that
/// says so instead of waiting for its input to end.
#[test]
fn an_abnormal_end_does_not_wait_for_standard_input() {
    let addr = format!("127.0.0.1:{}", port());
    let mut l = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["listen", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The caller's standard input stays open.
    let _input = c.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    l.kill().unwrap();
    let _ = l.wait();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the caller waited for its input");
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = c.wait_with_output().unwrap();
    assert!(
        matches!(status.code(), Some(3 | 4 | 6)),
        "{status:?}: {}",
        text(&out.stderr)
    );
}

/// `bookend ARGS` with all three standard streams piped.
fn spawn_piped(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `listen --keep` serves callers in turn from one standard input: input
/// typed after one caller's session ended abnormally goes to the next
/// caller, none of it lost with the session that ended (netcat's `-k`).
#[test]
fn keep_serves_the_next_caller_with_input_typed_after_an_abort() {
    let addr = format!("127.0.0.1:{}", port());
    let mut l = spawn_piped(&["listen", &addr, "--keep", "--mode", "message"]);
    let mut typed = l.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The first caller's session is waiting for input when its process
    // dies (its TCP is reset or closed without a DISCONNECT).
    let mut first = spawn_piped(&["connect", &addr, "--mode", "message"]);
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap();
    let _ = first.wait();
    std::thread::sleep(Duration::from_millis(300));
    let mut second = spawn_piped(&["connect", &addr, "--mode", "message"]);
    let second_input = second.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    typed.write_all(b"for the second caller\n").unwrap();
    typed.flush().unwrap();
    drop(typed);
    // The second caller's own input ends too: both disconnects, then exit.
    drop(second_input);
    let out = wait(second);
    let _ = l.kill();
    let _ = l.wait();
    assert_eq!(
        text(&out.stdout),
        "for the second caller\n",
        "{}",
        text(&out.stderr)
    );
}

/// `listen --at-once N` serves callers together: a second caller is served
/// while the first is still connected, each line of standard input goes to
/// one of them (the one waiting longest), and both callers' data comes out.
#[test]
fn at_once_serves_callers_together_and_shares_the_input() {
    let addr = format!("127.0.0.1:{}", port());
    let mut l = spawn_piped(&["listen", &addr, "--at-once", "2", "--mode", "message"]);
    let mut typed = l.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut callers: Vec<(Child, std::process::ChildStdin)> = ["from A\n", "from B\n"]
        .iter()
        .map(|line| {
            let mut c = spawn_piped(&["connect", &addr, "--mode", "message"]);
            let mut input = c.stdin.take().unwrap();
            input.write_all(line.as_bytes()).unwrap();
            input.flush().unwrap();
            (c, input)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    typed.write_all(b"x\ny\n").unwrap();
    drop(typed);
    let mut got = Vec::new();
    for (c, input) in callers.drain(..) {
        drop(input);
        let out = wait(c);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        got.push(text(&out.stdout));
    }
    got.sort();
    assert_eq!(got, ["x\n", "y\n"], "one line of input each");
    let _ = l.kill();
    let out = l.wait_with_output().unwrap();
    let shown = text(&out.stdout);
    assert!(
        shown.contains("from A\n") && shown.contains("from B\n"),
        "{shown:?}"
    );
}

/// A peer's abort while we are still sending is how the session ended, not
/// a local failure: the caller exits 4 (aborted), not 1. The listener's
/// standard output is closed, so the first data it must show makes it
/// abort (APPLICATION_ABORT) while the caller is mid-transfer.
#[test]
fn a_peer_abort_while_sending_exits_aborted() {
    let addr = format!("127.0.0.1:{}", port());
    let mut l = spawn_piped(&["listen", &addr]);
    drop(l.stdout.take());
    let _l_input = l.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = spawn_piped(&["connect", &addr]);
    let mut input = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..256 {
            if input.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = wait(c);
    let _ = writer.join();
    let _ = l.kill();
    let _ = l.wait();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}
