//! A signed-in HTTP client for tests: requests with the bearer token, answers as
//! (status, JSON body, headers).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Session, TestApp};

pub struct Api<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Event-Position` of a command's answer.
    pub fn position(&self) -> i64 {
        self.header("x-event-position")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no X-Event-Position on {} {}", self.status, self.body))
    }
}

impl<'a> Api<'a> {
    pub fn new(app: &'a TestApp, session: &Session) -> Self {
        Self {
            app,
            token: session.token.clone(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    pub async fn call(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(self.request(Method::GET, path)).await
    }

    /// A read that first waits for the read models to apply `position`.
    pub async fn get_after(&self, path: &str, position: i64) -> Answer {
        self.call(
            self.request(Method::GET, path)
                .header("x-min-position", position.to_string()),
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Value,
    ) -> Answer {
        let mut request = self.request(method, path).json(&body);
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        self.call(request).await
    }

    /// Moves a finding that has seen no triage yet (version 1) from OPEN to
    /// CONFIRMED; the answer, checked to be a 200.
    pub async fn confirm(&self, id: &str) -> Answer {
        let confirmed = self
            .send(
                Method::PATCH,
                &format!("/api/v1/findings/{id}/status"),
                Some("\"1\""),
                json!({ "status": "CONFIRMED" }),
            )
            .await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.body);
        confirmed
    }

    /// Launches a scan of `target` and records `report` (raw bytes in `format`, or
    /// sniffed when `format` is empty) as its results; the answer of the results call.
    pub async fn import(&self, target: &str, format: &str, report: Vec<u8>) -> Answer {
        let scan = self
            .send(
                Method::POST,
                "/api/v1/scans",
                None,
                json!({ "target": target, "scanner": if format.is_empty() { "any" } else { format } }),
            )
            .await;
        assert_eq!(scan.status, 202, "scan launch: {}", scan.body);
        let id = scan.body["id"].as_str().expect("scan id").to_owned();
        let answer = self
            .call(
                self.request(
                    Method::POST,
                    &if format.is_empty() {
                        format!("/api/v1/scans/{id}/results")
                    } else {
                        format!("/api/v1/scans/{id}/results?format={format}")
                    },
                )
                .header("content-type", "application/json")
                .body(report),
            )
            .await;
        assert_eq!(answer.status, 200, "import: {}", answer.body);
        answer
    }
}
