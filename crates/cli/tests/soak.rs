//! A CI-sized slice of `bookend soak`: every fault setting of the grid, both
//! modes, a few seeds. The promises hold in every row: nothing altered,
//! every failure with a reason, nothing leaked, and every client finished
//! where the row must pass (`bookend soak --seeds 400` is the full run,
//! whose table is in `CHANGELOG.md`).

use bookend_cli::soak;

#[test]
fn every_fault_setting_keeps_its_promises() {
    let grid = soak::grid(3, 3);
    assert!(grid.len() >= 20, "the grid lost settings");
    let report = soak::run(&grid, 9_000, 4, |_| {});
    assert!(report.ok(), "{report}");
    let runs: u64 = report.rows.iter().map(|r| r.runs).sum();
    assert_eq!(runs, grid.len() as u64 * 4);
    // The grid does reach what it names: damage caught by the CRC, and
    // failures (with reasons) where faults are severe.
    assert!(
        report.rows.iter().any(|r| r.failed_with_reason > 0),
        "{report}"
    );
}
