//! Runs only bookend lifecycles, for profilers:
//! `perf record -g target/release/profile_lifecycle`.

use bookend_benches::Bookend;

fn main() {
    let mut be = Bookend::new(4096, 8);
    for _ in 0..50_000 {
        be.lifecycles(1);
    }
}
