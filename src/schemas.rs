//! The committed event catalogue: one JSON Schema per event type under `schemas/`,
//! generated from the Rust types so that it cannot silently drift from them
//! (`tests/schemas.rs` fails when the files differ from the code).

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

/// `(file name, contents)` for every event type, in a stable order.
pub fn render() -> Vec<(String, String)> {
    vulnledger_aggregates::event_schemas()
        .into_iter()
        .map(|s| {
            let mut schema = serde_json::to_value(&s.schema).expect("schemas serialize");
            if let Value::Object(map) = &mut schema {
                map.insert(
                    "$id".into(),
                    json!(format!(
                        "https://vulnledger.dev/schemas/{}.{}.json",
                        s.aggregate_type, s.event_type
                    )),
                );
                map.insert(
                    "description".into(),
                    json!(format!(
                        "data of vulnledger.{}.{} events (CloudEvents type), event version {}",
                        s.aggregate_type, s.event_type, s.event_version
                    )),
                );
                map.insert("x-event-version".into(), json!(s.event_version));
                map.insert("x-aggregate-type".into(), json!(s.aggregate_type));
            }
            let text = serde_json::to_string_pretty(&schema).expect("schemas serialize") + "\n";
            (format!("{}.{}.json", s.aggregate_type, s.event_type), text)
        })
        .collect()
}

/// Rewrites `dir` to hold exactly the current schemas; returns how many were written.
pub fn write(dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rendered = render();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        let stale = path.extension().is_some_and(|e| e == "json")
            && !rendered
                .iter()
                .any(|(name, _)| path.file_name().is_some_and(|f| f == name.as_str()));
        if stale {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for (name, text) in &rendered {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(rendered.len())
}
