//! Where the relay delivers events: NATS JetStream when `NATS_URL` is set, an
//! in-process broadcast otherwise. Both carry the same CloudEvents envelopes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::store::StoredEvent;

/// The JetStream stream subscribers read.
pub const STREAM: &str = "VULNLEDGER_EVENTS";
/// Every event subject starts with this.
pub const SUBJECT_PREFIX: &str = "vulnledger.events";
/// How long JetStream remembers a `Nats-Msg-Id`: a re-publish within it is dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A CloudEvents 1.0 envelope in structured JSON mode (see docs/api.md, "Events for
/// subscribers").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub time: String,
    pub subject: String,
    pub datacontenttype: String,
    pub data: Value,
    pub tenantid: String,
    pub position: i64,
    pub sequence: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<String>,
    /// Not part of the envelope: the NATS subject it is published on.
    #[serde(skip)]
    pub nats_subject: String,
    /// Not part of the envelope: the event's transaction id (its place in commit
    /// order) and request id, sent as the headers [`TXID_HEADER`] and
    /// [`REQUEST_ID_HEADER`] so that our consumers need not ask the store for them.
    #[serde(skip)]
    pub txid: Option<i64>,
    #[serde(skip)]
    pub request_id: Option<String>,
}

/// The header that carries an event's transaction id.
pub const TXID_HEADER: &str = "Vulnledger-Txid";
/// The header that carries the request id of the command that recorded an event.
pub const REQUEST_ID_HEADER: &str = "Vulnledger-Request-Id";
/// The header that names the event store a message comes from
/// ([`crate::store::identity`]): several stores may publish to one stream.
pub const STORE_HEADER: &str = "Vulnledger-Store";

impl CloudEvent {
    pub fn from_stored(event: &StoredEvent) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: format!("{}:{}", event.aggregate_id, event.sequence),
            source: format!("vulnledger/{}", event.tenant_id),
            event_type: format!("vulnledger.{}.{}", event.aggregate_type, event.event_type),
            time: event
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            subject: event.aggregate_id.clone(),
            datacontenttype: "application/json".to_owned(),
            data: event.data().clone(),
            tenantid: event.tenant_id.to_string(),
            position: event.position,
            sequence: event.sequence,
            actor: event.metadata_str("actor_id").map(str::to_owned),
            nats_subject: subject_of(event),
            txid: Some(event.txid),
            request_id: event.metadata_str("request_id").map(str::to_owned),
        }
    }
}

/// `vulnledger.events.<tenantId>.<aggregateType>.<eventType>`
pub fn subject_of(event: &StoredEvent) -> String {
    format!(
        "{SUBJECT_PREFIX}.{}.{}.{}",
        event.tenant_id, event.aggregate_type, event.event_type
    )
}

/// The stream's configuration: created if absent, left alone if present.
pub fn stream_config() -> stream::Config {
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// `NATS_URL` taken apart: the servers, without credentials, and the credentials
/// they carried. async-nats 0.51 does not send a user and password or a token from
/// the URL itself (nats-io/nats.rs#1623), so [`connect`] hands them over as
/// connect options. Neither `Debug` nor any error shows the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl {
    pub servers: Vec<async_nats::ServerAddr>,
    credentials: Option<Credentials>,
}

#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    UserAndPassword { user: String, password: String },
    Token(String),
}

impl NatsUrl {
    /// One URL or several separated by commas (`nats://host:4222` or `host:4222`).
    /// `nats://user:password@host` gives a user and password, `nats://token@host` a
    /// token, both percent-decoded. The servers of a list may all carry the same
    /// credentials or leave them out; different ones are refused, as one set is used
    /// for every server (also those the cluster announces).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        anyhow::ensure!(!parts.is_empty(), "names no server");
        let mut servers = Vec::with_capacity(parts.len());
        let mut credentials: Option<Credentials> = None;
        for (i, part) in parts.iter().enumerate() {
            // The errors name the server by its place: the URL may hold a secret.
            let which = || {
                if parts.len() == 1 {
                    String::new()
                } else {
                    format!("server {} of {}: ", i + 1, parts.len())
                }
            };
            let mut url = part
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow::anyhow!("{}{e}", which()))?
                .into_inner();
            let user = percent_decode(url.username());
            let password = url.password().map(percent_decode);
            let found = match (user, password) {
                (Some(user), Some(Some(password))) => {
                    Some(Credentials::UserAndPassword { user, password })
                }
                (Some(token), None) if !token.is_empty() => Some(Credentials::Token(token)),
                (Some(_), None) => None,
                _ => anyhow::bail!(
                    "{}the credentials are not UTF-8 once percent-decoded",
                    which()
                ),
            };
            if let Some(found) = found {
                match &credentials {
                    Some(known) if *known != found => anyhow::bail!(
                        "the servers carry different credentials (one set is used for all)"
                    ),
                    _ => credentials = Some(found),
                }
                // Dropped from the address, which async-nats logs.
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            servers.push(
                async_nats::ServerAddr::from_url(url)
                    .map_err(|e| anyhow::anyhow!("{}{e}", which()))?,
            );
        }
        Ok(Self {
            servers,
            credentials,
        })
    }

    /// Connect options carrying the credentials, if any.
    pub fn options(&self) -> async_nats::ConnectOptions {
        match &self.credentials {
            None => async_nats::ConnectOptions::new(),
            Some(Credentials::UserAndPassword { user, password }) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Some(Credentials::Token(token)) => {
                async_nats::ConnectOptions::with_token(token.clone())
            }
        }
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsUrl")
            .field("servers", &self.servers)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// Shows the user, never the password or the token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UserAndPassword { user, .. } => f
                .debug_struct("UserAndPassword")
                .field("user", user)
                .field("password", &format_args!("***"))
                .finish(),
            Self::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// `%XX` sequences as bytes; `None` if the result is not UTF-8. A `%` not followed
/// by two hex digits stays as it is.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) if hex(*hi).is_some() && hex(*lo).is_some() => {
                out.push((hex(*hi).unwrap() * 16 + hex(*lo).unwrap()) as u8);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Connects to the NATS server(s) of `url` (`NATS_URL`, see [`NatsUrl::parse`]),
/// with the credentials it carries. Every connection to NATS goes through here;
/// `options` adds the caller's settings (name, timeouts).
pub async fn connect(
    url: &str,
    options: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::Client> {
    let url = NatsUrl::parse(url).map_err(|e| e.context("invalid NATS_URL"))?;
    Ok(options(url.options()).connect(url.servers).await?)
}

/// Connects to NATS and makes sure the stream exists. Fails fast when NATS is down;
/// the relay retries with back-off.
pub async fn connect_jetstream(url: &str) -> anyhow::Result<jetstream::Context> {
    let client = connect(url, |options| {
        options
            .name("vulnledger-relay")
            .connection_timeout(Duration::from_secs(2))
    })
    .await?;
    let mut context = jetstream::new(client);
    context.set_timeout(Duration::from_secs(5));
    context.get_or_create_stream(stream_config()).await?;
    Ok(context)
}

#[derive(Clone)]
pub enum Bus {
    /// JetStream, publishing as the store `store`.
    Nats {
        context: Box<jetstream::Context>,
        store: uuid::Uuid,
    },
    /// Subscribers in this process (projection workers). A slow one lags (and is
    /// told so) rather than holding the relay back.
    InProcess(broadcast::Sender<Arc<CloudEvent>>),
}

impl Bus {
    /// Delivers `batch` in order. For NATS: sends every publish, then waits for every
    /// acknowledgement, so `Ok` means JetStream stored (or deduplicated) them all.
    pub async fn publish_batch(&self, batch: &[Arc<CloudEvent>]) -> anyhow::Result<()> {
        match self {
            Self::Nats { context, store } => {
                let store = store.to_string();
                let mut acks = Vec::with_capacity(batch.len());
                for event in batch {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", event.id.as_str());
                    headers.insert(STORE_HEADER, store.as_str());
                    if let Some(txid) = event.txid {
                        headers.insert(TXID_HEADER, txid.to_string().as_str());
                    }
                    if let Some(request_id) = &event.request_id {
                        headers.insert(REQUEST_ID_HEADER, request_id.as_str());
                    }
                    let payload = bytes::Bytes::from(serde_json::to_vec(&**event)?);
                    acks.push(
                        context
                            .publish_with_headers(event.nats_subject.clone(), headers, payload)
                            .await?,
                    );
                }
                for ack in acks {
                    ack.await?;
                }
                Ok(())
            }
            Self::InProcess(sender) => {
                for event in batch {
                    // No subscriber is not an error: nobody is listening yet.
                    let _ = sender.send(Arc::clone(event));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(url: &str) -> Option<Credentials> {
        NatsUrl::parse(url).unwrap().credentials
    }

    fn hosts(url: &str) -> Vec<String> {
        NatsUrl::parse(url)
            .unwrap()
            .servers
            .into_iter()
            .map(|s| s.into_inner().to_string())
            .collect()
    }

    #[test]
    fn a_url_without_credentials_has_none() {
        assert_eq!(credentials("nats://127.0.0.1:4222"), None);
        assert_eq!(hosts("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(hosts("nats:4222"), ["nats://nats:4222"]);
    }

    #[test]
    fn user_and_password_or_token_are_taken_out_of_the_address_and_decoded() {
        assert_eq!(
            credentials("nats://alice:s3cr3t@nats:4222"),
            Some(Credentials::UserAndPassword {
                user: "alice".into(),
                password: "s3cr3t".into()
            })
        );
        assert_eq!(
            credentials("nats://al%20ice:p%40ss%3Aw%2Frd%25@nats:4222"),
            Some(Credentials::UserAndPassword {
                user: "al ice".into(),
                password: "p@ss:w/rd%".into()
            })
        );
        assert_eq!(
            credentials("nats://t0k%2Fen@nats:4222"),
            Some(Credentials::Token("t0k/en".into()))
        );
        assert_eq!(
            credentials("tls://alice:s3cr3t@nats:4222"),
            credentials("nats://alice:s3cr3t@nats:4222")
        );
        assert_eq!(hosts("nats://alice:s3cr3t@nats:4222"), ["nats://nats:4222"]);
        assert_eq!(hosts("nats://t0ken@nats:4222"), ["nats://nats:4222"]);
    }

    #[test]
    fn a_list_of_servers_shares_one_set_of_credentials() {
        let url = "nats://alice:pw@a:4222, nats://b:4222,nats://alice:pw@c:4222";
        assert_eq!(
            hosts(url),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert_eq!(
            credentials(url),
            Some(Credentials::UserAndPassword {
                user: "alice".into(),
                password: "pw".into()
            })
        );
        let error = NatsUrl::parse("nats://alice:pw@a:4222,nats://bob:s3cr3t@b:4222")
            .unwrap_err()
            .to_string();
        assert!(error.contains("different credentials"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn bad_urls_are_refused_without_showing_the_credentials() {
        for bad in [
            "",
            " , ",
            "http://alice:s3cr3t@nats:4222",
            "nats://alice:s3cr3t@nats:port",
            "nats://alice:s3cr3t@a:4222,nats://alice:s3cr3t@:4222",
            "nats://alice:%FF@nats:4222",
        ] {
            let error = format!("{:#}", NatsUrl::parse(bad).unwrap_err());
            assert!(
                !error.contains("s3cr3t") && !error.contains("%FF"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password_and_the_token() {
        let printed = format!(
            "{:?}",
            NatsUrl::parse("nats://alice:s3cr3t@nats:4222").unwrap()
        );
        assert!(
            printed.contains("alice") && !printed.contains("s3cr3t"),
            "{printed}"
        );
        let printed = format!("{:?}", NatsUrl::parse("nats://t0ken@nats:4222").unwrap());
        assert!(!printed.contains("t0ken"), "{printed}");
    }

    #[test]
    fn percent_decoding_keeps_a_stray_percent() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz%4").as_deref(), Some("%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }
}
