//! `tools/wireshark/bookend.lua` decodes a capture of `bookend demo`: every
//! frame with its type, flags, length, the checks of a sealed frame and the
//! user data, found by its port and, with the port registration off, by its
//! heuristic; and bookend's default port is one Wireshark gives to no other
//! protocol. Skipped, saying so, where `tshark` is not installed (`.ci/run`
//! installs it when it can).

use std::process::Command;

fn tshark() -> Option<()> {
    match Command::new("tshark").arg("--version").output() {
        Ok(o) if o.status.success() => Some(()),
        _ => {
            eprintln!("tshark not installed: the dissector test is skipped");
            None
        }
    }
}

fn script() -> String {
    format!(
        "lua_script:{}/../../tools/wireshark/bookend.lua",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A capture of one demo client with two transactions (virtual time, so
/// the same bytes every run).
fn demo_pcap(dir: &std::path::Path) -> std::path::PathBuf {
    let pcap = dir.join("demo.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args([
            "demo",
            "--clients",
            "1",
            "--transactions-per-client",
            "2",
            "--pcap",
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pcap
}

fn fields(pcap: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-X", &script(), "-r"])
        .arg(pcap)
        .args(extra)
        .args([
            "-Y",
            "bookend",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "bookend.type",
            "-e",
            "bookend.flags",
            "-e",
            "bookend.length",
            "-e",
            "bookend.header_check.ok",
            "-e",
            "bookend.trailer.ok",
            "-e",
            "bookend.connect_check.ok",
            "-e",
            "bookend.option.kind",
            "-e",
            "bookend.data.text",
            "-e",
            "bookend.data",
            "-e",
            "bookend.payload",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("Lua"), "{err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const EXPECTED: &str = "\
0x01|0x01|70|||1|0x0001,0x0002,0x0003,0x0004,0x0005,0x0006,0x0007|client-0|636c69656e742d30|
0x02|0x41|80|1|1||0x0001,0x0002,0x0003,0x0004,0x0005,0x0006,0x0007|welcome to bookend|77656c636f6d6520746f20626f6f6b656e64|
0x04|0x40|12|1|1|||||0000000000000001
0x04|0x40|12|1|1|||||00000000000f4241
0x04|0x40|12|1|1|||||0000000000000002
0x04|0x40|12|1|1|||||00000000000f4242
0x05|0x41|12|1|1||||0000000000000002|
0x05|0x41|12|1|1||||0000000000000002|
";

#[test]
fn the_dissector_decodes_a_demo_capture_by_port_and_by_heuristic() {
    if tshark().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bookend-wireshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = demo_pcap(&dir);
    let by_port = fields(&pcap, &[]);
    let by_heuristic = fields(&pcap, &["-o", "bookend.port:0"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(by_port, EXPECTED);
    assert_eq!(by_heuristic, EXPECTED);
}

/// bookend's default port (docs/protocol.md §1) is decoded by Wireshark as
/// no other protocol.
#[test]
fn the_default_port_is_no_other_protocols_in_wireshark() {
    if tshark().is_none() {
        return;
    }
    let out = Command::new("tshark")
        .args(["-G", "decodes"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let port = bookend_cli::demo::PORT.to_string();
    let taken: Vec<&str> = table
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() >= 3 && f[0] == "tcp.port" && f[1] == port
        })
        .collect();
    assert!(taken.is_empty(), "tcp port {port} is decoded as {taken:?}");
}

/// A capture file (LINKTYPE_RAW: IPv4) holding one TCP segment per payload,
/// each on its own connection to port 7050.
fn pcap_of(payloads: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    for v in [0xa1b2c3d4u32.to_le_bytes(), [2, 0, 4, 0]] {
        f.extend_from_slice(&v);
    }
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for (i, p) in payloads.iter().enumerate() {
        let total = 40 + p.len();
        let mut pkt = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            6,
            0,
            0,
        ];
        pkt.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        let sport = 40000 + i as u16;
        pkt.extend_from_slice(&sport.to_be_bytes());
        pkt.extend_from_slice(&7050u16.to_be_bytes());
        pkt.extend_from_slice(&1u32.to_be_bytes()); // seq
        pkt.extend_from_slice(&1u32.to_be_bytes()); // ack
        pkt.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        pkt.extend_from_slice(p);
        f.extend_from_slice(&(i as u32 + 1).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        f.extend_from_slice(&pkt);
    }
    f
}

/// §2.5 and §2.4: a sealed frame whose trailer or header check is wrong is
/// marked, with the CRC's expert info, and a frame whose length is over
/// every limit is flagged malformed and not waited for.
#[test]
fn damaged_and_oversized_frames_are_flagged() {
    if tshark().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bookend-wireshark-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("bad.pcap");
    // §10.2's rows: a sealed PING whose trailer is off by one bit, one whose
    // header check is; and a DATA announcing 4 GiB.
    std::fs::write(
        &pcap,
        pcap_of(&[
            &[
                0x07, 0x40, 0, 0, 0, 4, 0x21, 0xa8, 0x7d, 0x96, 0x3a, 0x1f, 0x01, 0x04,
            ],
            &[
                0x07, 0x40, 0, 0, 0, 4, 0x21, 0xa8, 0x7d, 0x97, 0x3a, 0x1f, 0x01, 0x05,
            ],
            &[0x04, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00],
        ]),
    )
    .unwrap();
    let count = |filter: &str| {
        let out = Command::new("tshark")
            .args(["-X", &script(), "-r"])
            .arg(&pcap)
            .args(["-Y", filter])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let trailer = count("bookend.trailer.ok == 0");
    let header = count("bookend.header_check.ok == 0");
    let crc = count("bookend.crc_bad");
    let malformed = count("bookend.malformed");
    let _ = std::fs::remove_dir_all(&dir);
    // The second's trailer covers its damaged header check: it fails too.
    assert_eq!((trailer, header, crc, malformed), (2, 1, 2, 1));
}

/// `bookend check --pcap` records the run so that the dissector decodes it:
/// each §5.3 case's CONNECT, ACCEPT and the ABORT(UNEXPECTED_FRAME) it
/// provoked.
#[test]
fn a_check_runs_capture_decodes() {
    if tshark().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["serve", "--listen", &addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let dir = std::env::temp_dir().join(format!("bookend-wireshark-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("check.pcap");
    let run = Command::new(env!("CARGO_BIN_EXE_bookend"))
        .args(["check", "server", &addr, "--case", "5.3.*", "--pcap"])
        .arg(&pcap)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    let count = |filter: &str| {
        let out = Command::new("tshark")
            .args(["-X", &script(), "-o", &format!("bookend.port:{port}"), "-r"])
            .arg(&pcap)
            .args(["-Y", filter])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let aborts = count("bookend.type == 0x06 && bookend.reason == 0x0101");
    let accepts = count("bookend.type == 0x02");
    let _ = std::fs::remove_dir_all(&dir);
    let cases = String::from_utf8_lossy(&run.stdout)
        .matches("bookend/5.3/")
        .count();
    assert!(cases >= 8);
    assert_eq!(aborts, cases);
    // The OPEN cases' handshakes, answered.
    assert!(accepts >= 1, "no ACCEPT decoded");
}
