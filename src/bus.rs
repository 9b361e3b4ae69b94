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
}

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

/// Connects to the NATS server(s) of `url` (`NATS_URL`). Every connection to NATS
/// goes through here; `options` adds the caller's settings (name, timeouts).
pub async fn connect(
    url: &str,
    options: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> anyhow::Result<async_nats::Client> {
    Ok(options(async_nats::ConnectOptions::new())
        .connect(url)
        .await?)
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
    Nats(Box<jetstream::Context>),
    /// Subscribers in this process (projection workers). A slow one lags (and is
    /// told so) rather than holding the relay back.
    InProcess(broadcast::Sender<Arc<CloudEvent>>),
}

impl Bus {
    /// Delivers `batch` in order. For NATS: sends every publish, then waits for every
    /// acknowledgement, so `Ok` means JetStream stored (or deduplicated) them all.
    pub async fn publish_batch(&self, batch: &[Arc<CloudEvent>]) -> anyhow::Result<()> {
        match self {
            Self::Nats(context) => {
                let mut acks = Vec::with_capacity(batch.len());
                for event in batch {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", event.id.as_str());
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
