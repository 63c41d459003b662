//! Runs `cargo xtask tidy`'s checks as a test, so `cargo test --workspace` (CI) fails on a
//! violation of the architecture's boundaries or size limits.

#[test]
fn workspace_is_tidy() {
    let found = xtask::tidy(&xtask::workspace_root()).expect("read the workspace");
    let report: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert!(
        found.is_empty(),
        "{} violation(s) (also: cargo xtask tidy):\n{}",
        found.len(),
        report.join("\n")
    );
}
