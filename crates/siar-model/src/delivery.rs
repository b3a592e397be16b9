//! Fan-out work: who is owed which version of which release, and how far it got.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{DeliveryId, ReleaseId};
use crate::release::ReleaseContent;

/// What happened to the release that this delivery announces.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Published,
    Corrected,
    Retracted,
}

impl Event {
    /// The Standard Webhooks event type.
    pub fn webhook_type(self) -> &'static str {
        match self {
            Event::Published => "release.published",
            Event::Corrected => "release.corrected",
            Event::Retracted => "release.retracted",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Published => "published",
            Event::Corrected => "corrected",
            Event::Retracted => "retracted",
        }
    }
}

/// The work queue a delivery waits in; one kind of worker drains each.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Partner webhooks.
    Webhook,
    /// A mailing list to expand into one email delivery per recipient.
    List,
    /// One email to one recipient.
    Email,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Webhook, Queue::List, Queue::Email];
}

/// Who a delivery is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Partner(String),
    List(String),
    Recipient { list: String, address: String },
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a delivery target (expected partner:ID, list:ID or email:LIST:ADDRESS)")]
pub struct TargetParseError(String);

crate::ids::string_schema!(
    Target,
    "`partner:ID`, `list:ID` or `email:LIST:ADDRESS`.",
    "partner:media-center"
);

impl Target {
    pub fn queue(&self) -> Queue {
        match self {
            Target::Partner(_) => Queue::Webhook,
            Target::List(_) => Queue::List,
            Target::Recipient { .. } => Queue::Email,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Partner(p) => write!(f, "partner:{p}"),
            Target::List(l) => write!(f, "list:{l}"),
            Target::Recipient { list, address } => write!(f, "email:{list}:{address}"),
        }
    }
}

impl FromStr for Target {
    type Err = TargetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetParseError(s.chars().take(80).collect());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "partner" => Ok(Target::Partner(rest.to_owned())),
            "list" => Ok(Target::List(rest.to_owned())),
            "email" => {
                let (list, address) = rest.split_once(':').ok_or_else(bad)?;
                Ok(Target::Recipient {
                    list: list.to_owned(),
                    address: address.to_owned(),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for `due_at`.
    Pending,
    /// Claimed by a worker whose lease has not been given back.
    InFlight,
    Delivered,
    /// Failed for good; an operator can replay it.
    Failed,
    /// Never sent because a newer version or a retraction made it moot before it went out.
    Superseded,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::InFlight,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Superseded => "superseded",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status `{s}` (expected pending, in_flight, delivered, failed or superseded)")
            })
    }
}

/// A worker's claim on a delivery. Only the holder of the current token may settle it; once
/// `until` passes, the delivery may be claimed again and the old token is worthless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lease {
    pub token: String,
    pub worker: String,
    pub until: DateTime<Utc>,
}

/// One message owed to one target: a release version and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: DeliveryId,
    pub release_id: ReleaseId,
    pub version: u32,
    pub event: Event,
    pub target: Target,
    pub status: DeliveryStatus,
    /// When it may next be attempted (for `pending`).
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Delivery {
    /// The id receivers use to drop repeats: the same for every attempt of this delivery.
    pub fn stable_id(&self) -> String {
        format!(
            "{}.v{}.{}",
            self.release_id,
            self.version,
            self.event.as_str()
        )
    }
}

/// One attempt to deliver, for the operator: when, what came back, how long it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub at: DateTime<Utc>,
    /// The HTTP status, when an answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// `delivered`, `retry`, `failed` or `gone`.
    pub outcome: String,
    /// `timeout`, `connect`, `refused_address`, `http_5xx`, `http_4xx`, `http_429`, `redirect`…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_class: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The first 4 KiB of the answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response: String,
    /// When it will be tried again (for `retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
}

/// A delivery to be recorded: who, and from when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub target: Target,
    pub due_at: DateTime<Utc>,
}

/// Decides who is owed a release. The binary builds one from the configured partners and lists;
/// the store calls it inside the step that publishes, corrects or retracts, so the outbox
/// always agrees with the release's state.
pub trait Router: Send + Sync {
    /// Every target whose filters match this content (partners and lists, not recipients).
    fn targets(&self, content: &ReleaseContent) -> Vec<Target>;

    /// When a delivery for `target` made at `now` becomes due: `now` for instant targets, the
    /// next firing of the target's schedule otherwise. Never earlier than `now`.
    fn due_at(&self, target: &Target, now: DateTime<Utc>) -> DateTime<Utc>;
}

/// A router that owes nothing to anyone: for tests and tools that only ingest.
impl Router for () {
    fn targets(&self, _: &ReleaseContent) -> Vec<Target> {
        Vec::new()
    }
    fn due_at(&self, _: &Target, now: DateTime<Utc>) -> DateTime<Utc> {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_as_text() {
        for t in [
            Target::Partner("media-center".into()),
            Target::List("jurnalis".into()),
            Target::Recipient {
                list: "jurnalis".into(),
                address: "a@b.id".into(),
            },
        ] {
            let s = t.to_string();
            assert_eq!(s.parse::<Target>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(serde_json::from_str::<Target>(&json).unwrap(), t);
        }
        assert!("radio".parse::<Target>().is_err());
        assert!("partner:".parse::<Target>().is_err());
        assert!("email:nolist".parse::<Target>().is_err());
    }
}
