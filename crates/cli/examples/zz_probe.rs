//! scratch
use bookend_cli::soak;
fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .init();
    let grid = soak::grid(3, 3);
    let s = grid
        .iter()
        .find(|s| s.name.starts_with("loss 10%") && s.name.ends_with("stream"))
        .unwrap();
    for seed in [35u64] {
        let mut c = s.config.clone();
        c.capture = true;
        let r = bookend_cli::demo::run(bookend_cli::demo::DemoConfig { seed, ..c });
        std::fs::write("/tmp/s35.pcap", r.pcap.unwrap()).unwrap();
        for c in &r.clients {
            if !c.finished {
                println!("   {} {:?} attempts {}", c.name, c.failure, c.attempts);
            }
        }
    }
}
