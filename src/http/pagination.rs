//! `{data, meta:{total, limit, page, totalPages, nextCursor}}` lists with either a
//! 1-based `page` or an opaque keyset `cursor` (stable under concurrent inserts).

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Error;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `?field=..` parsed strictly: a malformed query string is a 400 problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        // PostgreSQL cannot store NUL in text: refuse it here rather than fail later.
        if parts
            .uri
            .query()
            .is_some_and(|q| q.to_ascii_lowercase().contains("%00"))
        {
            return Err(Error::BadRequest(
                "the query string must not contain NUL characters".into(),
            ));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|e| Error::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    /// 1-based page number; not with `cursor`.
    pub page: Option<i64>,
    /// Opaque `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated request for one page.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub page: i64,
    /// The keyset values after which the page starts, when a cursor was given.
    pub after: Option<Value>,
}

impl PageRequest {
    pub fn offset(&self) -> i64 {
        if self.after.is_some() {
            0
        } else {
            (self.page - 1) * self.limit
        }
    }
}

impl PageParams {
    pub fn validate(&self) -> Result<PageRequest, Error> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let page = self.page.unwrap_or(1);
        if !(1..=1_000_000).contains(&page) {
            return Err(Error::BadRequest(
                "page must be between 1 and 1000000".into(),
            ));
        }
        let after = match &self.cursor {
            None => None,
            Some(_) if self.page.is_some() => {
                return Err(Error::BadRequest(
                    "use either page or cursor, not both".into(),
                ))
            }
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        Ok(PageRequest { limit, page, after })
    }
}

pub fn encode_cursor(keys: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(keys.to_string())
}

fn decode_cursor(cursor: &str) -> Result<Value, Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_array)
        .ok_or_else(|| Error::BadRequest("cursor is not one this server issued".into()))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    pub total: i64,
    pub limit: i64,
    pub page: i64,
    pub total_pages: i64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T> Paginated<T> {
    /// `rows` may hold one more than `limit` (fetched to learn whether a next page
    /// exists); `keys` gives the keyset values of a row for the next cursor.
    pub fn new(
        mut rows: Vec<T>,
        total: i64,
        request: &PageRequest,
        keys: impl Fn(&T) -> Value,
    ) -> Self {
        let more = rows.len() as i64 > request.limit;
        rows.truncate(request.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| encode_cursor(&keys(last)))
        } else {
            None
        };
        Self {
            data: rows,
            meta: PageMeta {
                total,
                limit: request.limit,
                page: request.page,
                total_pages: (total + request.limit - 1) / request.limit,
                next_cursor,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(limit: Option<i64>, page: Option<i64>, cursor: Option<&str>) -> PageParams {
        PageParams {
            limit,
            page,
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn limits_outside_one_to_two_hundred_are_refused() {
        assert!(params(Some(201), None, None).validate().is_err());
        assert!(params(Some(0), None, None).validate().is_err());
        assert_eq!(params(None, None, None).validate().unwrap().limit, 50);
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let cursor = encode_cursor(&json!(["2026-01-01T00:00:00Z", "abc"]));
        let request = params(None, None, Some(&cursor)).validate().unwrap();
        assert_eq!(request.after, Some(json!(["2026-01-01T00:00:00Z", "abc"])));
        assert!(params(None, None, Some("'; DROP TABLE users; --"))
            .validate()
            .is_err());
        assert!(params(None, Some(2), Some(&cursor)).validate().is_err());
    }

    #[test]
    fn the_last_page_has_no_next_cursor() {
        let request = params(Some(2), None, None).validate().unwrap();
        let page = Paginated::new(vec![1, 2, 3], 3, &request, |n| json!([n]));
        assert_eq!(page.data, vec![1, 2]);
        assert_eq!(page.meta.total_pages, 2);
        assert!(page.meta.next_cursor.is_some());
        let last = Paginated::new(vec![3], 3, &request, |n| json!([n]));
        assert!(last.meta.next_cursor.is_none());
    }
}
