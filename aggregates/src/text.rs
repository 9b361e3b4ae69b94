//! Normalisation and limits for free text entering the event store.
//!
//! Events are kept forever and replayed on every load, so text is trimmed and bounded once,
//! here, before it becomes history. Limits count characters, not bytes, because they are
//! documented to users in characters.

use crate::DomainError;

pub const MAX_TARGET: usize = 512;
pub const MAX_SCANNER: usize = 100;
pub const MAX_PROFILE: usize = 100;
pub const MAX_BRANCH: usize = 255;
pub const MAX_COMMIT: usize = 100;
pub const MAX_STEP: usize = 200;
pub const MAX_FORMAT: usize = 100;
/// Reasons, justifications and comments: room for a real argument, not for a log dump.
pub const MAX_PROSE: usize = 4000;
pub const MAX_TAG: usize = 100;
pub const MAX_TAGS: usize = 50;
pub const MAX_FINGERPRINT: usize = 512;
pub const MAX_ASSET: usize = 512;
pub const MAX_TITLE: usize = 1000;
pub const MAX_IDENTIFIER: usize = 200;
pub const MAX_PACKAGE: usize = 512;
pub const MAX_VERSION: usize = 200;
pub const MAX_LOCATION: usize = 2000;
/// Scanner advisories can be long; this still keeps one event far below a megabyte.
pub const MAX_DESCRIPTION: usize = 20_000;

/// A mandatory text: trimmed, non-blank, at most `max` characters.
pub fn required(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(field, "must not be blank"));
    }
    check_length(field, trimmed, max)?;
    Ok(trimmed.to_owned())
}

/// An optional text: trimmed; blank counts as absent so clients need not send `null`.
pub fn optional(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, DomainError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(trimmed) => {
            check_length(field, trimmed, max)?;
            Ok(Some(trimmed.to_owned()))
        }
    }
}

/// Tags are a set: each is a required text, duplicates collapse keeping first-seen order,
/// and the count is bounded after collapsing.
pub fn tags(values: Vec<String>) -> Result<Vec<String>, DomainError> {
    let mut tags: Vec<String> = Vec::with_capacity(values.len());
    for value in &values {
        let tag = required("tags", value, MAX_TAG)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(DomainError::invalid(
            "tags",
            format!("must hold at most {MAX_TAGS} tags"),
        ));
    }
    Ok(tags)
}

fn check_length(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_text_is_trimmed() {
        assert_eq!(required("target", "  repo  ", 10), Ok("repo".to_owned()));
    }

    #[test]
    fn blank_required_text_is_invalid() {
        assert_eq!(
            required("target", " \t\n", 10),
            Err(DomainError::invalid("target", "must not be blank"))
        );
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        assert_eq!(required("title", "ééé", 3), Ok("ééé".to_owned()));
        assert_eq!(
            required("title", "éééé", 3),
            Err(DomainError::invalid(
                "title",
                "must be at most 3 characters"
            ))
        );
    }

    #[test]
    fn blank_optional_text_becomes_absent() {
        assert_eq!(optional("step", Some("   ".into()), 10), Ok(None));
        assert_eq!(optional("step", None, 10), Ok(None));
        assert_eq!(
            optional("step", Some(" x ".into()), 10),
            Ok(Some("x".into()))
        );
        assert!(optional("step", Some("x".repeat(11)), 10).is_err());
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated_in_order() {
        let tags = tags(vec![" b ".into(), "a".into(), "b".into()]);
        assert_eq!(tags, Ok(vec!["b".to_owned(), "a".to_owned()]));
    }

    #[test]
    fn blank_overlong_or_too_many_tags_are_invalid() {
        assert_eq!(
            tags(vec!["ok".into(), " ".into()]),
            Err(DomainError::invalid("tags", "must not be blank"))
        );
        assert_eq!(
            tags(vec!["x".repeat(MAX_TAG + 1)]),
            Err(DomainError::invalid(
                "tags",
                "must be at most 100 characters"
            ))
        );
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(
            tags(many),
            Err(DomainError::invalid("tags", "must hold at most 50 tags"))
        );
        let exactly: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(tags(exactly).map(|t| t.len()), Ok(MAX_TAGS));
    }
}
