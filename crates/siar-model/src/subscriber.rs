//! Mailing-list subscribers and the consent trail that justifies every mail they get.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a subscriber stands on one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberStatus {
    /// Asked to join; waiting for the confirmation link. Gets nothing but that mail.
    Pending,
    /// Confirmed (or imported as confirmed with a recorded source): gets the list's mail.
    Confirmed,
    /// Left the list. A fresh confirmation brings them back.
    Unsubscribed,
    /// Their mailbox answered a permanent failure; suppressed until they subscribe again.
    Bounced,
}

impl SubscriberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Pending => "pending",
            SubscriberStatus::Confirmed => "confirmed",
            SubscriberStatus::Unsubscribed => "unsubscribed",
            SubscriberStatus::Bounced => "bounced",
        }
    }
}

/// One step in a subscriber's consent trail: what happened, when, and through what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentEvent {
    pub at: DateTime<Utc>,
    /// `requested`, `confirmed`, `imported`, `unsubscribed`, `bounced`.
    pub action: String,
    /// `form`, `api`, `one-click`, `import: <text>`, `smtp 550 …`.
    pub source: String,
    /// The client address that made the request, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// A subscriber of one list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subscriber {
    pub list: String,
    /// Lower-cased, trimmed.
    pub address: String,
    pub status: SubscriberStatus,
    pub created_at: DateTime<Utc>,
    /// When the current pending period began: confirmation links older than this are void, so
    /// a link from before an unsubscribe cannot bring the subscriber back.
    pub pending_since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<DateTime<Utc>>,
    /// Every consent step, oldest first.
    pub history: Vec<ConsentEvent>,
}

/// An address as siar keeps it (trimmed, lower-cased), or why it is not one.
pub fn normalize_address(input: &str) -> Result<String, String> {
    let a = input.trim().to_lowercase();
    let shown: String = input.chars().take(80).collect();
    if a.is_empty() {
        return Err("the address is empty".into());
    }
    if a.len() > 254 {
        return Err(format!("`{shown}…` is longer than 254 characters"));
    }
    if a.chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>,;:\"()[]\\".contains(c))
    {
        return Err(format!("`{shown}` is not an email address"));
    }
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err(format!("`{shown}` is not an email address (no @)"));
    };
    if local.is_empty()
        || local.len() > 64
        || domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with(['.', '-'])
        || domain.ends_with(['.', '-'])
        || domain.contains("..")
        || local.contains('@')
    {
        return Err(format!("`{shown}` is not an email address"));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_or_refused() {
        assert_eq!(
            normalize_address("  Wartawan@Banjarmasin.Post.co.id ").unwrap(),
            "wartawan@banjarmasin.post.co.id"
        );
        for bad in [
            "",
            "tanpa-at",
            "a@b",
            "a@.id",
            "a b@c.id",
            "a@b.id\r\nBcc: x@y.id",
            "<a@b.id>",
            "@b.id",
            "a@@b.id",
        ] {
            assert!(normalize_address(bad).is_err(), "{bad:?} accepted");
        }
    }
}
