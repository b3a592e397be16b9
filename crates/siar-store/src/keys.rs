//! Key layout. Every key starts with one tag byte naming its kind; numbers are big-endian so
//! byte order is numeric order; ids are the 16 ULID bytes, so they sort by creation time.
//!
//! `docs` tree (the large records):
//! ```text
//! R id                      → release state (JSON, without content; see `record`)
//! V id version:u32          → Version (JSON)           every version, 1..=n, with its text
//! ```
//! `releases` tree (small keys):
//! ```text
//! P publish_ms:u64 id       → ()                       all releases by publish time
//! S publish_ms:u64 id       → ()                       scheduled releases not yet published
//! L slug                    → id                       permalinks
//! C category 0x00 publish_ms:u64 id → ()               releases by category and time
//! H kind ":" value          → id                       idempotency: hash:…, guid:…, key:…
//! M name                    → JSON                     small named records (metadata)
//! ```
//! The `outbox` tree's layout is in [`crate::outbox`].

use chrono::{DateTime, Utc};
use siar_model::{Category, DeliveryId, DeliveryStatus, Event, Queue, ReleaseId, Target};

pub(crate) fn ms(t: DateTime<Utc>) -> [u8; 8] {
    u64::try_from(t.timestamp_millis())
        .unwrap_or(0)
        .to_be_bytes()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn release(id: ReleaseId) -> Vec<u8> {
    cat(&[b"R", &id.to_bytes()])
}

pub(crate) fn version(id: ReleaseId, n: u32) -> Vec<u8> {
    cat(&[b"V", &id.to_bytes(), &n.to_be_bytes()])
}

pub(crate) fn by_publish(at: DateTime<Utc>, id: ReleaseId) -> Vec<u8> {
    cat(&[b"P", &ms(at), &id.to_bytes()])
}

pub(crate) fn scheduled(at: DateTime<Utc>, id: ReleaseId) -> Vec<u8> {
    cat(&[b"S", &ms(at), &id.to_bytes()])
}

pub(crate) fn slug(s: &str) -> Vec<u8> {
    cat(&[b"L", s.as_bytes()])
}

pub(crate) fn category_prefix(c: &Category) -> Vec<u8> {
    cat(&[b"C", c.as_str().as_bytes(), &[0]])
}

pub(crate) fn by_category(c: &Category, at: DateTime<Utc>, id: ReleaseId) -> Vec<u8> {
    cat(&[&category_prefix(c), &ms(at), &id.to_bytes()])
}

pub(crate) fn idem(kind: &str, value: &str) -> Vec<u8> {
    cat(&[b"H", kind.as_bytes(), b":", value.as_bytes()])
}

pub(crate) fn meta(name: &str) -> Vec<u8> {
    cat(&[b"M", name.as_bytes()])
}

/// The release id in the last 16 bytes of an index key.
pub(crate) fn trailing_release(key: &[u8]) -> Option<ReleaseId> {
    let tail: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(ReleaseId::from_bytes(tail))
}

pub(crate) fn trailing_ms(key: &[u8]) -> Option<u64> {
    let end = key.len().checked_sub(16)?;
    let b: [u8; 8] = key.get(end.checked_sub(8)?..end)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

// ---- outbox ----

pub(crate) fn queue_byte(q: Queue) -> u8 {
    match q {
        Queue::Webhook => b'w',
        Queue::List => b'l',
        Queue::Email => b'e',
    }
}

pub(crate) fn status_byte(s: DeliveryStatus) -> u8 {
    match s {
        DeliveryStatus::Pending => b'p',
        DeliveryStatus::InFlight => b'i',
        DeliveryStatus::Delivered => b'd',
        DeliveryStatus::Failed => b'f',
        DeliveryStatus::Superseded => b's',
    }
}

fn event_byte(e: Event) -> u8 {
    match e {
        Event::Published => b'p',
        Event::Corrected => b'c',
        Event::Retracted => b'r',
    }
}

pub(crate) fn delivery(id: DeliveryId) -> Vec<u8> {
    cat(&[b"D", &id.to_bytes()])
}

pub(crate) fn due_prefix(q: Queue) -> Vec<u8> {
    vec![b'Q', queue_byte(q)]
}

pub(crate) fn due(q: Queue, at: DateTime<Utc>, id: DeliveryId) -> Vec<u8> {
    cat(&[&due_prefix(q), &ms(at), &id.to_bytes()])
}

/// Due webhook deliveries of one partner (ids are letters, digits and hyphens: no 0).
pub(crate) fn partner_due_prefix(partner: &str) -> Vec<u8> {
    cat(&[b"P", partner.as_bytes(), &[0]])
}

pub(crate) fn partner_due(partner: &str, at: DateTime<Utc>, id: DeliveryId) -> Vec<u8> {
    cat(&[&partner_due_prefix(partner), &ms(at), &id.to_bytes()])
}

pub(crate) fn attempts_prefix(d: DeliveryId) -> Vec<u8> {
    cat(&[b"A", &d.to_bytes()])
}

pub(crate) fn attempt(d: DeliveryId, n: u32) -> Vec<u8> {
    cat(&[b"A", &d.to_bytes(), &n.to_be_bytes()])
}

/// A release's deliveries: its entries in the one-delivery-per-(version, event, target) index.
pub(crate) fn by_release_prefix(r: ReleaseId) -> Vec<u8> {
    cat(&[b"U", &r.to_bytes()])
}

pub(crate) fn status_prefix(s: DeliveryStatus) -> Vec<u8> {
    vec![b'T', status_byte(s)]
}

pub(crate) fn by_status(s: DeliveryStatus, d: DeliveryId) -> Vec<u8> {
    cat(&[&status_prefix(s), &d.to_bytes()])
}

pub(crate) fn unique(r: ReleaseId, version: u32, e: Event, t: &Target) -> Vec<u8> {
    cat(&[
        b"U",
        &r.to_bytes(),
        &version.to_be_bytes(),
        &[event_byte(e)],
        t.to_string().as_bytes(),
    ])
}

pub(crate) fn trailing_delivery(key: &[u8]) -> Option<DeliveryId> {
    let tail: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(DeliveryId::from_bytes(tail))
}
