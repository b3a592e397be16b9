//! Subscribers and mail jobs on real sled: consent rules, and materialising recipients in
//! atomic chunks that survive a reopen without skipping or doubling anyone.

#![allow(clippy::unwrap_used)] // Tests: a panic is a failed test.

use std::collections::BTreeSet;

use chrono::{Duration, Utc};
use siar_model::{DeliveryId, Event, ReleaseId, SubscriberStatus};
use siar_store::{
    ConfirmOutcome, ImportRow, JobItem, JobSource, MailJob, RowState, Store, SubscribeOutcome,
};

fn job(id: DeliveryId, list: &str, source: JobSource) -> MailJob {
    MailJob {
        id,
        list: list.into(),
        items: vec![JobItem {
            delivery_id: id,
            release_id: ReleaseId::new(),
            version: 1,
            event: Event::Published,
        }],
        digest: false,
        source,
        cursor: None,
        rows: 0,
        materialised: false,
        done: false,
        created_at: Utc::now(),
    }
}

fn import(store: &Store, list: &str, addresses: impl IntoIterator<Item = String>) {
    let rows: Vec<ImportRow> = addresses
        .into_iter()
        .map(|address| ImportRow { address })
        .collect();
    store
        .import_subscribers(list, &rows, Some("test"), Utc::now())
        .unwrap();
}

#[test]
fn consent_rules_subscribe_confirm_leave_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = Utc::now();
    let SubscribeOutcome::ConfirmationNeeded(s) = store
        .request_subscription("jurnalis", "a@b.id", "form", Some("10.0.0.1"), t0)
        .unwrap()
    else {
        panic!("a new address needs confirming")
    };
    assert_eq!(s.status, SubscriberStatus::Pending);
    assert!(!store.is_receiving("jurnalis", "a@b.id").unwrap());
    // A second request keeps the pending period (both links work).
    store
        .request_subscription(
            "jurnalis",
            "a@b.id",
            "form",
            None,
            t0 + Duration::seconds(5),
        )
        .unwrap();
    assert!(matches!(
        store
            .confirm_subscription("jurnalis", "a@b.id", t0, None, t0 + Duration::seconds(9))
            .unwrap(),
        ConfirmOutcome::Confirmed(_)
    ));
    assert_eq!(
        store
            .confirm_subscription("jurnalis", "a@b.id", t0, None, t0)
            .unwrap(),
        ConfirmOutcome::AlreadyConfirmed
    );
    assert!(store.is_receiving("jurnalis", "a@b.id").unwrap());
    assert_eq!(
        store
            .request_subscription("jurnalis", "a@b.id", "form", None, t0)
            .unwrap(),
        SubscribeOutcome::AlreadyConfirmed
    );
    // Leaving, then an import, changes nothing: an import never overrides leaving.
    let t1 = t0 + Duration::minutes(1);
    store
        .unsubscribe("jurnalis", "a@b.id", "one-click", None, t1)
        .unwrap();
    import(&store, "jurnalis", ["a@b.id".to_owned()]);
    assert!(!store.is_receiving("jurnalis", "a@b.id").unwrap());
    // Coming back: the old link is void, a fresh one works.
    let t2 = t1 + Duration::minutes(1);
    store
        .request_subscription("jurnalis", "a@b.id", "form", None, t2)
        .unwrap();
    assert_eq!(
        store
            .confirm_subscription("jurnalis", "a@b.id", t0, None, t2)
            .unwrap(),
        ConfirmOutcome::Stale
    );
    assert!(matches!(
        store
            .confirm_subscription("jurnalis", "a@b.id", t2, None, t2)
            .unwrap(),
        ConfirmOutcome::Confirmed(_)
    ));
    let s = store.subscriber("jurnalis", "a@b.id").unwrap().unwrap();
    let trail: Vec<&str> = s.history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        trail,
        [
            "requested",
            "requested",
            "confirmed",
            "unsubscribed",
            "requested",
            "confirmed"
        ]
    );
    assert_eq!(s.history[0].ip.as_deref(), Some("10.0.0.1"));

    // A bounce ends the address's subscriptions on every list.
    import(&store, "warga", ["a@b.id".to_owned(), "c@d.id".to_owned()]);
    assert_eq!(store.suppress("a@b.id", "smtp 550", t2).unwrap(), 2);
    assert!(!store.is_receiving("warga", "a@b.id").unwrap());
    assert!(store.is_receiving("warga", "c@d.id").unwrap());
    assert_eq!(
        store
            .subscriber("jurnalis", "a@b.id")
            .unwrap()
            .unwrap()
            .status,
        SubscriberStatus::Bounced
    );

    // Unconfirmed requests are purged after their time; confirmed ones stay.
    store
        .request_subscription("jurnalis", "old@b.id", "form", None, t0 - Duration::days(8))
        .unwrap();
    assert_eq!(store.purge_unconfirmed(t0 - Duration::days(7)).unwrap(), 1);
    assert!(store.subscriber("jurnalis", "old@b.id").unwrap().is_none());
    assert!(store.subscriber("warga", "c@d.id").unwrap().is_some());
}

#[test]
fn recipients_are_materialised_once_each_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all: Vec<String> = (0..1000).map(|i| format!("w{i:04}@banjar.id")).collect();
    import(&store, "warga", all.clone());
    // Some who must not be mailed: pending, left, suppressed.
    store
        .request_subscription("warga", "pending@banjar.id", "form", None, Utc::now())
        .unwrap();
    store
        .unsubscribe("warga", "w0007@banjar.id", "one-click", None, Utc::now())
        .unwrap();
    store
        .suppress("w0500@banjar.id", "smtp 550", Utc::now())
        .unwrap();

    let id = DeliveryId::new();
    store
        .create_job(&job(id, "warga", JobSource::Subscribers))
        .unwrap();
    let mut seen = Vec::new();
    let mut store = store;
    for round in 0.. {
        let rows = store.materialise(id, 64).unwrap();
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.into_iter().map(|(seq, r)| (seq, r.address)));
        if round % 3 == 0 {
            // Reopen between chunks: the cursor and rows came back together.
            drop(store);
            store = Store::open(dir.path()).unwrap();
        }
    }
    let addresses: BTreeSet<&String> = seen.iter().map(|(_, a)| a).collect();
    assert_eq!(seen.len(), 998, "each receiving subscriber once");
    assert_eq!(addresses.len(), 998);
    assert!(!addresses.contains(&"w0007@banjar.id".to_owned()));
    assert!(!addresses.contains(&"w0500@banjar.id".to_owned()));
    assert!(!addresses.contains(&"pending@banjar.id".to_owned()));
    let seqs: Vec<u32> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..998).collect::<Vec<u32>>());
    let j = store.job(id).unwrap().unwrap();
    assert!(j.materialised);
    assert_eq!(j.rows, 998);
    assert_eq!(store.row_counts(id).unwrap().pending, 998);

    // Settle some as sent; a correction job mails exactly those still receiving.
    let mut sent = store.rows(id, 0, 10, None).unwrap();
    for (_, r) in &mut sent {
        r.state = RowState::Sent;
        r.version = 1;
    }
    store.put_rows(id, &sent).unwrap();
    store
        .unsubscribe("warga", &sent[0].1.address, "one-click", None, Utc::now())
        .unwrap();
    let correction = DeliveryId::new();
    store
        .create_job(&job(correction, "warga", JobSource::Received { job: id }))
        .unwrap();
    let mut again = Vec::new();
    loop {
        let rows = store.materialise(correction, 3).unwrap();
        if rows.is_empty() {
            break;
        }
        again.extend(rows.into_iter().map(|(_, r)| r.address));
    }
    let expected: Vec<String> = sent[1..].iter().map(|(_, r)| r.address.clone()).collect();
    assert_eq!(again, expected);
    assert_eq!(store.unfinished_jobs().unwrap().len(), 2);
}
