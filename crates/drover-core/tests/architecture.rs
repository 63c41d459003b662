//! ARCHITECTURE.md names exactly the invariants the code names (`Invariant::ALL`), so the
//! document and the checks cannot drift apart.

use std::collections::BTreeSet;

use drover_core::Invariant;

/// The bold ALL_CAPS names that open the bullets of the "## Invariants" section.
fn documented() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ARCHITECTURE.md");
    let doc = std::fs::read_to_string(path).expect("ARCHITECTURE.md at the repository root");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Invariants"))
        .expect("a '## Invariants' section");
    section
        .lines()
        .filter_map(|l| l.strip_prefix("- **"))
        .filter_map(|l| l.split("**").next())
        .filter(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn architecture_md_names_exactly_the_invariants_of_the_code() {
    let code: BTreeSet<String> = Invariant::ALL
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let doc = documented();
    let only_doc: Vec<_> = doc.difference(&code).collect();
    let only_code: Vec<_> = code.difference(&doc).collect();
    assert!(
        only_doc.is_empty() && only_code.is_empty(),
        "ARCHITECTURE.md names {only_doc:?} that drover_core::Invariant does not, and the code \
         names {only_code:?} that ARCHITECTURE.md does not: add or remove them on both sides"
    );
}

#[test]
fn the_core_checks_the_invariants_its_state_can_show() {
    let checked: Vec<&str> = Invariant::ALL
        .iter()
        .filter(|i| i.checked_by_core())
        .map(|i| i.name())
        .collect();
    for name in [
        "CREDIT",
        "QUEUE_GATE",
        "ACTIVE_INDEXES",
        "KEY_SERIAL",
        "SILENCE_TIMER",
    ] {
        assert!(checked.contains(&name), "{name} is not checked by the core");
    }
}
