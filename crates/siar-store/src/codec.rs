//! Delivery records and their attempts in a compact binary form.
//!
//! A delivery record is written when it is owed and again when it settles, and read when it
//! is claimed: with 20 partners, twenty times per release each. As JSON it cost more to encode
//! and decode than the rest of its bookkeeping together, and three times the bytes. The form
//! here is fixed-order fields behind a tag byte; records written as JSON by earlier versions
//! (they start with `{`) are still read.
//!
//! ```text
//! TAG id:16 release:16 version:u32 event:u8 status:u8 attempts:u32
//!     due_at created_at updated_at            time = seconds:i64 nanoseconds:u32
//!     target:str  flags:u8 [lease: token:str worker:str until:time] [last_error:str]
//!     [delivered_at:time]                     str = length:u32 UTF-8 bytes
//! ```
//! Numbers are big-endian; `flags` says which of the bracketed fields follow (1 lease,
//! 2 last_error, 4 delivered_at). An attempt:
//!
//! ```text
//! TAG_ATTEMPT number:u32 at:time duration_ms:u64 outcome:str error_class:str error:str
//!     response:str flags:u8 [status:u16] [next_at:time]       flags: 1 status, 2 next_at
//! ```

use chrono::{DateTime, Utc};
use siar_model::{Attempt, Delivery, DeliveryId, DeliveryStatus, Event, Lease, ReleaseId, Target};

use crate::{Result, StoreError};

/// The first byte of a binary record (a JSON one starts with `{`).
const TAG: u8 = 0xD1;

/// The first byte of a binary attempt.
const TAG_ATTEMPT: u8 = 0xA1;

const HAS_STATUS: u8 = 1;
const HAS_NEXT: u8 = 2;

const HAS_LEASE: u8 = 1;
const HAS_ERROR: u8 = 2;
const HAS_DELIVERED: u8 = 4;

pub(crate) fn encode_delivery(d: &Delivery) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + d.last_error.as_ref().map_or(0, String::len));
    out.push(TAG);
    out.extend_from_slice(&d.id.to_bytes());
    out.extend_from_slice(&d.release_id.to_bytes());
    out.extend_from_slice(&d.version.to_be_bytes());
    out.push(event_byte(d.event));
    out.push(status_byte(d.status));
    out.extend_from_slice(&d.attempts.to_be_bytes());
    for t in [d.due_at, d.created_at, d.updated_at] {
        put_time(&mut out, t);
    }
    put_str(&mut out, &d.target.to_string());
    let flags = if d.lease.is_some() { HAS_LEASE } else { 0 }
        | if d.last_error.is_some() { HAS_ERROR } else { 0 }
        | if d.delivered_at.is_some() {
            HAS_DELIVERED
        } else {
            0
        };
    out.push(flags);
    if let Some(l) = &d.lease {
        put_str(&mut out, &l.token);
        put_str(&mut out, &l.worker);
        put_time(&mut out, l.until);
    }
    if let Some(e) = &d.last_error {
        put_str(&mut out, e);
    }
    if let Some(t) = d.delivered_at {
        put_time(&mut out, t);
    }
    out
}

/// A delivery record, binary or (written by an earlier version) JSON.
pub(crate) fn decode_delivery(b: &[u8]) -> Result<Delivery> {
    decode_tagged(b, TAG, "delivery", read_delivery)
}

/// `b` read by `read` when it starts with `tag`, else as JSON (an earlier version's record);
/// a binary record `read` cannot make out, or with bytes left over, is corrupt.
fn decode_tagged<T: serde::de::DeserializeOwned>(
    b: &[u8],
    tag: u8,
    what: &str,
    read: fn(&mut Reader<'_>) -> Option<T>,
) -> Result<T> {
    if b.first() != Some(&tag) {
        return crate::decode(b, what);
    }
    let mut r = Reader(&b[1..]);
    read(&mut r)
        .filter(|_| r.0.is_empty())
        .ok_or_else(|| StoreError::Corrupt {
            what: what.into(),
            message: format!("a binary {what} record is cut short or holds an unknown value"),
        })
}

fn read_delivery(r: &mut Reader<'_>) -> Option<Delivery> {
    let id = DeliveryId::from_bytes(r.array()?);
    let release_id = ReleaseId::from_bytes(r.array()?);
    let version = u32::from_be_bytes(r.array()?);
    let event = event_from(r.byte()?)?;
    let status = status_from(r.byte()?)?;
    let attempts = u32::from_be_bytes(r.array()?);
    let due_at = r.time()?;
    let created_at = r.time()?;
    let updated_at = r.time()?;
    let target: Target = r.str()?.parse().ok()?;
    let flags = r.byte()?;
    let lease = r.optional(flags & HAS_LEASE != 0, |r| {
        Some(Lease {
            token: r.str()?.to_owned(),
            worker: r.str()?.to_owned(),
            until: r.time()?,
        })
    })?;
    let last_error = r.optional(flags & HAS_ERROR != 0, |r| Some(r.str()?.to_owned()))?;
    let delivered_at = r.optional(flags & HAS_DELIVERED != 0, Reader::time)?;
    Some(Delivery {
        id,
        release_id,
        version,
        event,
        target,
        status,
        due_at,
        attempts,
        lease,
        last_error,
        created_at,
        updated_at,
        delivered_at,
    })
}

pub(crate) fn encode_attempt(a: &Attempt) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + a.error.len() + a.response.len());
    out.push(TAG_ATTEMPT);
    out.extend_from_slice(&a.number.to_be_bytes());
    put_time(&mut out, a.at);
    out.extend_from_slice(&a.duration_ms.to_be_bytes());
    for s in [&a.outcome, &a.error_class, &a.error, &a.response] {
        put_str(&mut out, s);
    }
    let flags = if a.status.is_some() { HAS_STATUS } else { 0 }
        | if a.next_at.is_some() { HAS_NEXT } else { 0 };
    out.push(flags);
    if let Some(s) = a.status {
        out.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(t) = a.next_at {
        put_time(&mut out, t);
    }
    out
}

/// An attempt, binary or (written by an earlier version) JSON.
pub(crate) fn decode_attempt(b: &[u8]) -> Result<Attempt> {
    decode_tagged(b, TAG_ATTEMPT, "attempt", read_attempt)
}

fn read_attempt(r: &mut Reader<'_>) -> Option<Attempt> {
    let number = u32::from_be_bytes(r.array()?);
    let at = r.time()?;
    let duration_ms = u64::from_be_bytes(r.array()?);
    let outcome = r.str()?.to_owned();
    let error_class = r.str()?.to_owned();
    let error = r.str()?.to_owned();
    let response = r.str()?.to_owned();
    let flags = r.byte()?;
    let status = r.optional(flags & HAS_STATUS != 0, |r| {
        Some(u16::from_be_bytes(r.array()?))
    })?;
    let next_at = r.optional(flags & HAS_NEXT != 0, Reader::time)?;
    Some(Attempt {
        number,
        at,
        status,
        duration_ms,
        outcome,
        error_class,
        error,
        response,
        next_at,
    })
}

fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>) {
    out.extend_from_slice(&t.timestamp().to_be_bytes());
    out.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn time(&mut self) -> Option<DateTime<Utc>> {
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        DateTime::from_timestamp(secs, nanos)
    }

    /// `Some(read(self))` when `present`, `Some(None)` when not; `None` if the read failed.
    fn optional<T>(
        &mut self,
        present: bool,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if present {
            read(self).map(Some)
        } else {
            Some(None)
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = usize::try_from(u32::from_be_bytes(self.array()?)).ok()?;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

fn event_byte(e: Event) -> u8 {
    match e {
        Event::Published => b'p',
        Event::Corrected => b'c',
        Event::Retracted => b'r',
    }
}

fn event_from(b: u8) -> Option<Event> {
    [Event::Published, Event::Corrected, Event::Retracted]
        .into_iter()
        .find(|e| event_byte(*e) == b)
}

fn status_byte(s: DeliveryStatus) -> u8 {
    crate::keys::status_byte(s)
}

fn status_from(b: u8) -> Option<DeliveryStatus> {
    DeliveryStatus::ALL
        .into_iter()
        .find(|s| status_byte(*s) == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Delivery {
        let now = Utc::now();
        Delivery {
            id: DeliveryId::at(now),
            release_id: ReleaseId::new(),
            version: 3,
            event: Event::Corrected,
            target: Target::Recipient {
                list: "wartawan".into(),
                address: "redaksi@example.id".into(),
            },
            status: DeliveryStatus::InFlight,
            due_at: now,
            attempts: 2,
            lease: Some(Lease {
                token: "t-1".into(),
                worker: "webhooks-7".into(),
                until: now + chrono::Duration::seconds(30),
            }),
            last_error: Some("the partner answered 503 — “sibuk”".into()),
            created_at: now - chrono::Duration::nanoseconds(123_456_789),
            updated_at: now,
            delivered_at: None,
        }
    }

    /// Every field comes back exactly, with and without the optional ones; JSON records of
    /// earlier versions still read; damage is an error, not a wrong delivery.
    #[test]
    fn deliveries_round_trip_and_json_still_reads() {
        let full = sample();
        assert_eq!(decode_delivery(&encode_delivery(&full)).unwrap(), full);
        let mut bare = sample();
        bare.target = Target::Partner("media-center".into());
        bare.event = Event::Published;
        bare.status = DeliveryStatus::Delivered;
        bare.lease = None;
        bare.last_error = None;
        bare.delivered_at = Some(Utc::now());
        assert_eq!(decode_delivery(&encode_delivery(&bare)).unwrap(), bare);
        let json = serde_json::to_vec(&full).unwrap();
        assert_eq!(decode_delivery(&json).unwrap(), full);
        let bytes = encode_delivery(&full);
        assert!(
            bytes.len() < json.len() / 2,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        for cut in [1, 20, bytes.len() - 1] {
            assert!(decode_delivery(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_delivery(&longer).is_err());
    }

    #[test]
    fn attempts_round_trip_and_json_still_reads() {
        let now = Utc::now();
        let full = Attempt {
            number: 2,
            at: now,
            status: Some(503),
            duration_ms: 1234,
            outcome: "retry".into(),
            error_class: "http_5xx".into(),
            error: "the partner answered 503".into(),
            response: "<h1>Sibuk — coba lagi</h1>".into(),
            next_at: Some(now + chrono::Duration::seconds(300)),
        };
        assert_eq!(decode_attempt(&encode_attempt(&full)).unwrap(), full);
        let bare = Attempt {
            status: None,
            next_at: None,
            error_class: String::new(),
            error: String::new(),
            response: String::new(),
            outcome: "delivered".into(),
            ..full.clone()
        };
        assert_eq!(decode_attempt(&encode_attempt(&bare)).unwrap(), bare);
        assert_eq!(
            decode_attempt(&serde_json::to_vec(&full).unwrap()).unwrap(),
            full
        );
        let bytes = encode_attempt(&full);
        assert!(decode_attempt(&bytes[..bytes.len() - 1]).is_err());
    }
}
