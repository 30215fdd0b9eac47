//! `bookend check server`: against `bookend serve` over kernel TCP every case
//! passes (or is UNIMPLEMENTED where the server declines an optional
//! feature), and against a broken implementation the run fails with the
//! requirement, the expected and actual outcome, and the bytes exchanged.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .arg("check")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn bookend_serve_passes_every_case() {
    let addr = format!("127.0.0.1:{}", port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["serve", "--listen", &addr, "--short-timers"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (code, text) = check(&["server", &addr, "--timers"]);
    let (json_code, json) = check(&["server", &addr, "--case", "9.2.*", "--json"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("FAILED "), "{text}");
    assert!(text.contains("bookend/9.2/1    OK            OK"), "{text}");
    // The timer cases ran (the server's timers at 2 s).
    assert!(text.contains("bookend/7/2      OK            OK"), "{text}");
    // Every §10.2 row a callee can be sent (all but the REJECT).
    assert_eq!(text.matches("bookend/10.2/").count(), 13, "{text}");
    assert_eq!(json_code, Some(0));
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 3, "{json}");
    assert!(
        lines[0].starts_with("{\"id\":\"bookend/9.2/1\"") && lines[0].contains("\"wire\":[{"),
        "{json}"
    );
}

/// An implementation that answers a malformed CONNECT with the right ABORT
/// but ends with FIN instead of RST (§5.5 requires the RST): the case
/// FAILS on its close, and says what was expected and what came.
#[test]
fn an_abort_without_rst_fails_with_expected_and_actual() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 64];
                let _ = s.read(&mut b);
                // ABORT(PROTOCOL_ERROR), then a FIN: the RST is missing.
                let _ = s.write_all(&[0x06, 0, 0, 0, 0, 2, 0x01, 0x00]);
                let _ = s.shutdown(std::net::Shutdown::Write);
                std::thread::sleep(Duration::from_secs(4));
            });
        }
    });
    let (code, text) = check(&["server", &addr, "--case", "10.2.6"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("bookend/10.2/6   OK            FAILED"),
        "{text}"
    );
    assert!(
        text.contains("close: expected RST within 2500 ms of the ABORT")
            && text.contains("actual FIN"),
        "{text}"
    );
    assert!(text.contains("> 01 00 00 00 00 08 4e 4f 50 45"), "{text}");
    // Pinned as a known deviation, the same run passes, and its JUnit
    // report records the failure.
    let dir = std::env::temp_dir().join(format!("bookend-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pins, junit) = (dir.join("expected.txt"), dir.join("junit.xml"));
    std::fs::write(&pins, "bookend/10.2/6 FAILED  # no RST yet\n").unwrap();
    let (code, text) = check(&[
        "server",
        &addr,
        "--case",
        "10.2.6",
        "--expect",
        pins.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let xml = std::fs::read_to_string(&junit).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        xml.contains("failures=\"1\"") && xml.contains("bookend/10.2/6"),
        "{xml}"
    );
}

/// An implementation that never answers CONNECT fails the seed case.
#[test]
fn a_silent_implementation_fails_the_seed_case() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            let mut b = [0u8; 256];
            let _ = s.read(&mut b);
            drop(s);
        }
    });
    let (code, text) = check(&["server", &addr, "--case", "bookend/9.2/1"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("behaviour: expected ACCEPT"), "{text}");
}

/// §7's keepalive: a callee that grants the proposed 500 ms and then sends
/// nothing (no PING) fails the keepalive case, with the PINGs counted and
/// the longest silence.
#[test]
fn a_callee_that_never_pings_fails_the_keepalive_case() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        // §10.1's ACCEPT with every option explicit, KEEPALIVE_MS 500.
        let accept = [
            0x02, 0x01, 0, 0, 0, 0x3c, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x00, 0x00, 0x2d, 0x00, 0x01,
            0x00, 0x04, 0x00, 0x00, 0x40, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x04, 0x00, 0x01,
            0x00, 0x00, 0x80, 0x05, 0x00, 0x01, 0x00, 0x00, 0x06, 0x00, 0x04, 0x00, 0x00, 0x01,
            0xf4, 0x77, 0x65, 0x6c, 0x63, 0x6f, 0x6d, 0x65,
        ];
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                if s.read(&mut b).is_ok() {
                    let _ = s.write_all(&accept);
                }
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            });
        }
    });
    let (code, text) = check(&["server", &addr, "--case", "bookend/7/3"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bookend/7/3      FAILED"), "{text}");
    assert!(text.contains("actual 0 PINGs in"), "{text}");
}

/// The client role against `bookend connect --server` run in a loop (one
/// client per case): every case passes, or is INFORMATIONAL where the
/// client's proposal does not fit it.
#[test]
fn bookend_connect_passes_every_client_case() {
    let addr = format!("127.0.0.1:{}", port());
    let checker = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args([
            "check", "client", "--listen", &addr, "--wait", "10", "--timers",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let checker_id = checker.id();
    let clients = std::thread::spawn(move || {
        for _ in 0..100 {
            let _ = Command::new(env!("CARGO_BIN_EXE_bookend"))
                .args([
                    "connect",
                    "--server",
                    &addr,
                    "--transactions",
                    "3",
                    "--timeout",
                    "10",
                    "--short-timers",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // Stop once the checker has finished.
            if !std::path::Path::new(&format!("/proc/{checker_id}")).exists() {
                return;
            }
        }
    });
    let out = checker.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = clients.join();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("bookend/9.2/1    OK            OK"), "{text}");
}

/// The property mode: random scripts against `bookend serve` agree with the
/// reference machine; against an implementation that accepts and then
/// answers nothing, a disagreement is found, shrunk to one step, and
/// printed with the seed that repeats it.
#[test]
fn the_property_mode_agrees_with_bookend_and_shrinks_a_disagreement() {
    let addr = format!("127.0.0.1:{}", port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["serve", "--listen", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let (code, text) = check(&["server", &addr, "--random", "12", "--seed", "3"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("12 cases: 12 OK"), "{text}");

    // §10.1's ACCEPT to any CONNECT, then silence.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_addr = mute.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let accept = [
            0x02, 0x01, 0, 0, 0, 0x3c, 0x42, 0x4b, 0x4e, 0x44, 0x01, 0x00, 0x00, 0x2d, 0x00, 0x01,
            0x00, 0x04, 0x00, 0x00, 0x40, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x03, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x04, 0x00, 0x01,
            0x00, 0x00, 0x80, 0x05, 0x00, 0x01, 0x00, 0x00, 0x06, 0x00, 0x04, 0x00, 0x00, 0x75,
            0x30, 0x77, 0x65, 0x6c, 0x63, 0x6f, 0x6d, 0x65,
        ];
        for s in mute.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                if s.read(&mut b).is_ok() {
                    let _ = s.write_all(&accept);
                }
                while matches!(s.read(&mut b), Ok(n) if n > 0) {}
            });
        }
    });
    let (code, text) = check(&["server", &mute_addr, "--random", "1", "--seed", "3"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("(seed 3, script"), "{text}");
    // Shrunk: the script printed with the failure has a single step.
    let shrunk = text.lines().filter(|l| l.contains("; script [")).all(|l| {
        !l.split("; script [")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap()
            .contains(',')
    });
    assert!(shrunk, "{text}");
}
