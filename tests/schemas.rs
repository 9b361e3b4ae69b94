//! The committed `schemas/` must be exactly what the code generates.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn the_committed_event_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let committed: BTreeMap<String, String> = std::fs::read_dir(&dir)
        .expect("schemas/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    let generated: BTreeMap<String, String> = vulnledger::schemas::render().into_iter().collect();
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&generated),
        "event types differ; run `cargo run -- schemas` and commit schemas/"
    );
    for (name, text) in &generated {
        assert_eq!(
            &committed[name], text,
            "{name} is stale; run `cargo run -- schemas` and commit schemas/"
        );
    }
}

#[test]
fn every_schema_names_its_event_and_version() {
    for (name, text) in vulnledger::schemas::render() {
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(schema["$id"].as_str().unwrap().ends_with(&name), "{name}");
        assert_eq!(schema["x-event-version"], "1.0", "{name}");
        assert_eq!(schema["type"], "object", "{name}");
    }
}
