//! JSON plumbing shared by the readers: typed parsing with pointer-bearing errors, sniffing,
//! and small deserializers for the closed vocabularies (severities, levels) reports use.
//!
//! Where an error is: serde_json reports the line and column (in bytes) of the last character
//! it read when a value did not fit, which is the last character of a scalar, the opening
//! bracket of a container of the wrong type, or the closing brace of an object that lacks a
//! field. [`pointer_at`] rescans the document up to that spot, keeping the path of keys and
//! indices, and names the innermost value there. This runs only after a failure, so the happy
//! path pays nothing for path tracking (a tracking deserializer would allocate for every key).

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{ImportError, ReportFormat, WHOLE_DOCUMENT};

/// Parses `bytes` as `T`, turning serde's error into an [`ImportError`] for `format`.
pub(crate) fn from_slice<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    format: ReportFormat,
) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|e| error(bytes, Some(format), &e))
}

/// Maps a serde_json error: syntax problems concern the document (`$`, with serde's line and
/// column in the message); shape problems get the pointer of the value that did not fit.
pub(crate) fn error(
    bytes: &[u8],
    format: Option<ReportFormat>,
    e: &serde_json::Error,
) -> ImportError {
    let pointer = match e.classify() {
        serde_json::error::Category::Data => pointer_at(bytes, e.line(), e.column()),
        _ => WHOLE_DOCUMENT.to_owned(),
    };
    match e.classify() {
        serde_json::error::Category::Data => ImportError::new(format, pointer, e.to_string()),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            ImportError::malformed(format, format!("not valid JSON: {e}"))
        }
        serde_json::error::Category::Io => {
            ImportError::new(format, pointer, format!("not valid JSON: {e}"))
        }
    }
}

/// Renders path segments as an RFC 6901 pointer (`$` for the whole document).
pub(crate) fn pointer(segments: &[String]) -> String {
    if segments.is_empty() {
        return WHOLE_DOCUMENT.to_owned();
    }
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// The pointer of the innermost value at serde_json's (line, column) in `bytes`.
pub(crate) fn pointer_at(bytes: &[u8], line: usize, column: usize) -> String {
    let mut locator = Locator {
        bytes,
        pos: 0,
        target: offset_of(bytes, line, column),
        path: Vec::new(),
    };
    // Whatever the outcome, the path then holds the deepest value entered around the target.
    let _ = locator.value(0);
    pointer(&locator.path)
}

/// The byte offset of a 1-based line and byte column (column 0: just after the line break).
fn offset_of(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    if line > 1 {
        let mut seen = 1;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == line {
                    line_start = i + 1;
                    break;
                }
            }
        }
    }
    let offset = if column == 0 {
        line_start.saturating_sub(1)
    } else {
        line_start + column - 1
    };
    offset.min(bytes.len().saturating_sub(1))
}

/// Deeper than serde_json's own recursion limit, so reached only by documents serde refused.
const MAX_DEPTH: usize = 256;

enum Step {
    /// The target lies inside the value just scanned; `path` names it (or its deepest part).
    Found,
    /// The value ended before the target.
    Passed,
}

struct Locator<'a> {
    bytes: &'a [u8],
    pos: usize,
    target: usize,
    path: Vec<String>,
}

impl Locator<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Scans one value; stops as soon as the target is inside it.
    fn value(&mut self, depth: usize) -> Step {
        self.skip_ws();
        if self.pos > self.target || depth > MAX_DEPTH {
            return Step::Found;
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                self.string();
                self.scalar_end()
            }
            Some(_) => {
                while matches!(
                    self.peek(),
                    Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'+' | b'-' | b'.')
                ) {
                    self.pos += 1;
                }
                self.scalar_end()
            }
            None => Step::Found,
        }
    }

    fn scalar_end(&self) -> Step {
        if self.target < self.pos {
            Step::Found
        } else {
            Step::Passed
        }
    }

    fn object(&mut self, depth: usize) -> Step {
        if self.target == self.pos {
            return Step::Found;
        }
        self.pos += 1;
        loop {
            self.skip_ws();
            if self.pos > self.target {
                return Step::Found;
            }
            match self.peek() {
                Some(b'}') => {
                    if self.pos == self.target {
                        return Step::Found;
                    }
                    self.pos += 1;
                    return Step::Passed;
                }
                Some(b',') => self.pos += 1,
                Some(b'"') => {
                    let start = self.pos;
                    self.string();
                    if self.pos > self.target {
                        return Step::Found;
                    }
                    let key = decode_key(&self.bytes[start..self.pos]);
                    self.skip_ws();
                    if self.peek() != Some(b':') {
                        return Step::Found;
                    }
                    self.pos += 1;
                    self.path.push(key);
                    if let Step::Found = self.value(depth + 1) {
                        return Step::Found;
                    }
                    self.path.pop();
                }
                _ => return Step::Found,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Step {
        if self.target == self.pos {
            return Step::Found;
        }
        self.pos += 1;
        let mut index = 0usize;
        loop {
            self.skip_ws();
            if self.pos > self.target {
                return Step::Found;
            }
            match self.peek() {
                Some(b']') => {
                    if self.pos == self.target {
                        return Step::Found;
                    }
                    self.pos += 1;
                    return Step::Passed;
                }
                Some(b',') => {
                    self.pos += 1;
                    index += 1;
                }
                Some(_) => {
                    self.path.push(index.to_string());
                    if let Step::Found = self.value(depth + 1) {
                        return Step::Found;
                    }
                    self.path.pop();
                }
                None => return Step::Found,
            }
        }
    }

    /// Skips a string starting at its opening quote; leaves `pos` after the closing quote.
    fn string(&mut self) {
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => return,
                _ => {}
            }
        }
    }
}

fn decode_key(quoted: &[u8]) -> String {
    serde_json::from_slice::<String>(quoted).unwrap_or_else(|_| {
        let inner = quoted
            .strip_prefix(b"\"")
            .and_then(|q| q.strip_suffix(b"\""))
            .unwrap_or(quoted);
        String::from_utf8_lossy(inner).into_owned()
    })
}

// ---------------------------------------------------------------------------------------------
// Sniffing

pub(crate) enum SniffError {
    /// The bytes are not JSON at all.
    NotJson(ImportError),
    /// JSON, but not shaped like any format we read.
    Unrecognized(ImportError),
}

/// Recognizes the format from the top-level structure, reading values it does not need with
/// `IgnoredAny` (no allocation).
pub(crate) fn sniff(bytes: &[u8]) -> Result<ReportFormat, SniffError> {
    let root: Root =
        serde_json::from_slice(bytes).map_err(|e| SniffError::NotJson(error(bytes, None, &e)))?;
    let keys = match root {
        // An empty list says nothing of where it came from, and taken as a clean
        // Trivy report it would resolve every open finding of the scan's target and
        // scanner: only a declared `?format=trivy` reads it so.
        Root::Array { empty: true } => {
            return Err(SniffError::Unrecognized(unrecognized(
                "the document is an empty list; if it is a Trivy report without results, \
                 declare it with ?format=trivy"
                    .to_owned(),
            )))
        }
        Root::Array { empty: false } => return Ok(ReportFormat::Trivy),
        Root::Object(keys) => keys,
        Root::Scalar(kind) => {
            return Err(SniffError::Unrecognized(unrecognized(format!(
                "the document is {kind}, not a report object"
            ))))
        }
    };
    if let Some(Kind::String(bom_format)) = &keys.bom_format {
        if bom_format.eq_ignore_ascii_case("CycloneDX") {
            return Ok(ReportFormat::CycloneDx);
        }
    }
    if keys.runs.is_some() || keys.schema.as_deref().is_some_and(|s| s.contains("sarif")) {
        return Ok(ReportFormat::Sarif);
    }
    if keys.matches.is_some() {
        return Ok(ReportFormat::Grype);
    }
    if keys.schema_version || keys.results.is_some() {
        return Ok(ReportFormat::Trivy);
    }
    if keys.findings.is_some() {
        return Ok(ReportFormat::Native);
    }
    let what = if keys.count == 0 {
        "the document is an empty object".to_owned()
    } else if keys.bom_format.is_some() {
        "\"bomFormat\" is not \"CycloneDX\"".to_owned()
    } else {
        "no top-level key identifies a format".to_owned()
    };
    Err(SniffError::Unrecognized(unrecognized(what)))
}

fn unrecognized(what: String) -> ImportError {
    let formats: Vec<String> = ReportFormat::ALL
        .iter()
        .map(|f| format!("{f}: {}", f.shape()))
        .collect();
    ImportError::new(
        None,
        WHOLE_DOCUMENT,
        format!(
            "unrecognized report ({what}); the formats understood are {}",
            formats.join("; ")
        ),
    )
}

/// The JSON type of a value, its content skipped (strings kept: they are few and short at the
/// top level, and `bomFormat` / `$schema` need them).
enum Kind {
    String(String),
    Other,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
                Ok(Kind::String(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Other)
            }
        }
        deserializer.deserialize_any(KindVisitor)
    }
}

#[derive(Default)]
struct TopKeys {
    count: usize,
    runs: Option<Kind>,
    schema: Option<String>,
    matches: Option<Kind>,
    schema_version: bool,
    results: Option<Kind>,
    bom_format: Option<Kind>,
    findings: Option<Kind>,
}

enum Root {
    /// A list, and whether it holds anything.
    Array {
        empty: bool,
    },
    Object(TopKeys),
    Scalar(&'static str),
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RootVisitor;
        impl<'de> Visitor<'de> for RootVisitor {
            type Value = Root;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Root, E> {
                Ok(Root::Scalar("a string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Root, E> {
                Ok(Root::Scalar("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Root, E> {
                Ok(Root::Scalar("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Root, E> {
                Ok(Root::Scalar("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Root, E> {
                Ok(Root::Scalar("a number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Root, E> {
                Ok(Root::Scalar("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Root, A::Error> {
                let mut empty = true;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    empty = false;
                }
                Ok(Root::Array { empty })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root, A::Error> {
                let mut keys = TopKeys::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    keys.count += 1;
                    match key.as_ref() {
                        "runs" => keys.runs = Some(map.next_value()?),
                        "$schema" => {
                            if let Kind::String(s) = map.next_value()? {
                                keys.schema = Some(s.to_ascii_lowercase());
                            }
                        }
                        "matches" => keys.matches = Some(map.next_value()?),
                        // `trivy k8s` reports start with the cluster instead.
                        "SchemaVersion" | "ClusterName" => {
                            map.next_value::<IgnoredAny>()?;
                            keys.schema_version = true;
                        }
                        "Results" => keys.results = Some(map.next_value()?),
                        "bomFormat" => keys.bom_format = Some(map.next_value()?),
                        "findings" => keys.findings = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Root::Object(keys))
            }
        }
        deserializer.deserialize_any(RootVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Closed vocabularies

/// Reads a string from a closed, case-insensitive vocabulary; anything else is an error that
/// names what was found and what is accepted (positioned by serde, so it gets a pointer).
pub(crate) fn label<'de, D, T>(
    deserializer: D,
    what: &'static str,
    accepted: &'static str,
    map: fn(&str) -> Option<T>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct LabelVisitor<T> {
        what: &'static str,
        accepted: &'static str,
        map: fn(&str) -> Option<T>,
    }
    impl<T> Visitor<'_> for LabelVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a {} (one of {})", self.what, self.accepted)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.map)(v.trim()).ok_or_else(|| {
                E::custom(format!(
                    "unknown {} {v:?} (expected one of {})",
                    self.what, self.accepted
                ))
            })
        }
    }
    deserializer.deserialize_str(LabelVisitor {
        what,
        accepted,
        map,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locate(doc: &str) -> String {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Root {
            matches: Vec<Match>,
        }
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Match {
            sev: String,
            n: Option<f64>,
            #[serde(default)]
            tags: Vec<String>,
        }
        let e = serde_json::from_str::<Root>(doc).unwrap_err();
        pointer_at(doc.as_bytes(), e.line(), e.column())
    }

    #[test]
    fn a_scalar_of_the_wrong_type_is_named_by_its_own_pointer() {
        assert_eq!(
            locate(r#"{"matches":[{"sev":"x"},{"sev":"y","n":"12"}]}"#),
            "/matches/1/n"
        );
        assert_eq!(
            locate(r#"{"matches":[{"sev":"x"},{"sev":"y","tags":["a",7]}]}"#),
            "/matches/1/tags/1"
        );
    }

    #[test]
    fn a_container_of_the_wrong_type_is_named_by_its_pointer() {
        assert_eq!(locate(r#"{"matches":{}}"#), "/matches");
        assert_eq!(
            locate("{\"matches\":[\n {\"sev\":\"x\"},\n {\"sev\": {\"a\": [1, 2]}}]}"),
            "/matches/1/sev"
        );
        assert_eq!(locate(r#"{"matches":[5]}"#), "/matches/0");
    }

    #[test]
    fn a_missing_field_is_reported_on_the_object_that_lacks_it() {
        assert_eq!(locate(r#"{"matches":[{"sev":"x"},{"n":1}]}"#), "/matches/1");
        assert_eq!(locate(r#"{}"#), "$");
    }

    #[test]
    fn keys_are_escaped_and_multibyte_text_does_not_shift_the_pointer() {
        assert_eq!(pointer(&["a/b".into(), "c~d".into()]), "/a~1b/c~0d");
        assert_eq!(
            locate(r#"{"ignored é":"ééé","matches":[{"sev":"é","n":true}]}"#),
            "/matches/0/n"
        );
    }
}
