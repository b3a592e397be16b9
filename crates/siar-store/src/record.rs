//! How a release is kept: its state under `R id` (a [`Head`]), its text only in the version
//! records under `V id n`, so each version's text is written once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use siar_model::{Provenance, Release, ReleaseContent, ReleaseId, Retraction, Status};

use crate::StoreError;

/// A release without its content, as read from the store.
#[derive(Deserialize)]
pub(crate) struct Head {
    id: ReleaseId,
    slug: String,
    status: Status,
    publish_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    pub(crate) version: u32,
    #[serde(default)]
    correction_notes: Vec<String>,
    retraction: Option<Retraction>,
    provenance: Provenance,
}

impl Head {
    pub(crate) fn with(self, content: ReleaseContent) -> Release {
        Release {
            id: self.id,
            slug: self.slug,
            status: self.status,
            publish_at: self.publish_at,
            published_at: self.published_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
            content,
            correction_notes: self.correction_notes,
            retraction: self.retraction,
            provenance: self.provenance,
        }
    }
}

/// A release without its content, as written to the store.
#[derive(Serialize)]
pub(crate) struct HeadRef<'a> {
    id: ReleaseId,
    slug: &'a str,
    status: Status,
    publish_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u32,
    correction_notes: &'a [String],
    retraction: &'a Option<Retraction>,
    provenance: &'a Provenance,
}

impl<'a> HeadRef<'a> {
    pub(crate) fn of(r: &'a Release) -> Self {
        Self {
            id: r.id,
            slug: &r.slug,
            status: r.status,
            publish_at: r.publish_at,
            published_at: r.published_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            version: r.version,
            correction_notes: &r.correction_notes,
            retraction: &r.retraction,
            provenance: &r.provenance,
        }
    }
}

pub(crate) fn missing_version(id: ReleaseId, n: u32) -> StoreError {
    StoreError::Corrupt {
        what: format!("release {id}"),
        message: format!("its current version {n} is missing"),
    }
}
