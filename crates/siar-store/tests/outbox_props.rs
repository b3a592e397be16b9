//! Property test of the outbox on a real sled store on disk: random sequences of publish,
//! claim, complete, retry, fail, clock moves and crashes (the store dropped without a flush
//! and reopened; every lease held at that moment dies with its worker and its process, so
//! what it held is pending and due again at once).
//!
//! Checked after every step: the store's indexes agree with its records, every delivery
//! ever owed still exists with the status the model expects, a delivery is never handed
//! out while another worker's lease on it is still running, a settled delivery is never
//! handed out again, and only the current lease holder can settle. At the end, with the clock
//! moved on, everything owed ends delivered or failed: nothing lost.

#![allow(clippy::unwrap_used)] // Test helpers: a panic is a failed test.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use common::*;
use proptest::prelude::*;
use siar_model::{DeliveryId, DeliveryStatus, Queue, ReleaseContent, Router, Source, Target};
use siar_store::{Claim, Store, StoreError};

struct Partners(usize);

impl Router for Partners {
    fn targets(&self, _: &ReleaseContent) -> Vec<Target> {
        (0..self.0)
            .map(|i| Target::Partner(format!("p{i}")))
            .collect()
    }
    fn due_at(&self, _: &Target, now: DateTime<Utc>) -> DateTime<Utc> {
        now
    }
}

#[derive(Clone, Debug)]
enum Op {
    Publish(usize),
    Claim(usize),
    Complete(usize),
    Retry(usize, i64),
    Fail(usize),
    StaleComplete(usize),
    Advance(i64),
    Crash { recover: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..4).prop_map(Op::Publish),
        4 => (1usize..5).prop_map(Op::Claim),
        3 => any::<usize>().prop_map(Op::Complete),
        1 => (any::<usize>(), 0i64..120).prop_map(|(i, d)| Op::Retry(i, d)),
        1 => any::<usize>().prop_map(Op::Fail),
        1 => any::<usize>().prop_map(Op::StaleComplete),
        2 => (1i64..90).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(|recover| Op::Crash { recover }),
    ]
}

#[derive(Clone, Debug, PartialEq)]
enum M {
    Pending { due: DateTime<Utc> },
    InFlight { token: String, until: DateTime<Utc> },
    Delivered,
    Failed,
}

const LEASE: i64 = 30;

struct World {
    dir: tempfile::TempDir,
    store: Option<Store>,
    now: DateTime<Utc>,
    model: HashMap<DeliveryId, M>,
    held: Vec<Claim>,
    stale: Vec<Claim>,
    titles: usize,
}

impl World {
    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Publish(k) => {
                self.titles += 1;
                let title = format!("Rilis {}", self.titles);
                let r = self
                    .store()
                    .ingest(
                        new_release(&title, &[], self.now, Source::Api),
                        self.now,
                        &Partners(k),
                    )
                    .unwrap();
                for d in self.store().deliveries_for_release(r.release.id).unwrap() {
                    let fresh = self
                        .model
                        .insert(d.id, M::Pending { due: d.due_at })
                        .is_none();
                    prop_assert!(fresh, "a delivery was enqueued twice");
                }
            }
            Op::Claim(max) => {
                let claims = self
                    .store()
                    .claim(
                        Queue::Webhook,
                        self.now,
                        Duration::seconds(LEASE),
                        max,
                        "w",
                        &mut |_| true,
                    )
                    .unwrap();
                for c in claims {
                    let m = self.model.get(&c.delivery.id).cloned();
                    match m {
                        Some(M::Pending { due }) => {
                            prop_assert!(due <= self.now, "claimed before due")
                        }
                        Some(M::InFlight { until, .. }) => {
                            prop_assert!(
                                until <= self.now,
                                "claimed while another lease was running"
                            );
                            // The old holder's claim is now stale.
                            if let Some(i) = self
                                .held
                                .iter()
                                .position(|h| h.delivery.id == c.delivery.id)
                            {
                                let old = self.held.remove(i);
                                self.stale.push(old);
                            }
                        }
                        other => {
                            prop_assert!(false, "claimed a settled or unknown delivery: {other:?}")
                        }
                    }
                    self.model.insert(
                        c.delivery.id,
                        M::InFlight {
                            token: c.lease.token.clone(),
                            until: c.lease.until,
                        },
                    );
                    self.held.push(c);
                }
            }
            Op::Complete(i) | Op::Retry(i, _) | Op::Fail(i) => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let c = self.held.remove(i % self.held.len());
                let s = self.store();
                let res = match *op {
                    Op::Complete(_) => s.complete(&c, self.now),
                    Op::Retry(_, d) => {
                        s.retry_at(&c, self.now + Duration::seconds(d), "503", self.now)
                    }
                    _ => s.fail(&c, "404", self.now),
                };
                let current = matches!(self.model.get(&c.delivery.id), Some(M::InFlight { token, .. }) if *token == c.lease.token);
                prop_assert!(current, "a held claim must be current");
                let d = res.unwrap();
                let next = match *op {
                    Op::Complete(_) => M::Delivered,
                    Op::Retry(_, _) => M::Pending { due: d.due_at },
                    _ => M::Failed,
                };
                self.model.insert(c.delivery.id, next);
            }
            Op::StaleComplete(i) => {
                if self.stale.is_empty() {
                    return Ok(());
                }
                let c = self.stale.remove(i % self.stale.len());
                match self.store().complete(&c, self.now) {
                    Err(StoreError::LeaseLost(id)) => prop_assert_eq!(id, c.delivery.id),
                    other => prop_assert!(false, "a stale lease settled a delivery: {other:?}"),
                }
            }
            Op::Advance(secs) => self.now += Duration::seconds(secs),
            Op::Crash { recover } => {
                // No flush: whatever sled had not written is allowed to be lost — but only
                // together with the step that wrote it, which the model then re-reads.
                self.store = None;
                // Workers die with the process: their claims can never be settled.
                self.held.clear();
                let s = Store::open(self.dir.path()).unwrap();
                if recover {
                    s.recover_in_flight(self.now).unwrap();
                }
                self.store = Some(s);
                // Re-sync the model with what survived (all of it, in-process). Leases live
                // in memory: whatever was in flight is pending again, at its due time.
                for (id, m) in self.model.iter_mut() {
                    let d = self.store.as_ref().unwrap().delivery(*id).unwrap();
                    prop_assert!(d.is_some(), "delivery {id} lost in a crash");
                    let d = d.unwrap();
                    if let M::InFlight { .. } = m {
                        prop_assert_eq!(d.status, DeliveryStatus::Pending);
                        prop_assert!(d.due_at <= self.now, "due again at once");
                        *m = M::Pending { due: d.due_at };
                    }
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let problems = self.store().check_outbox().unwrap();
        prop_assert!(problems.is_empty(), "{problems:?}");
        for (id, m) in &self.model {
            let d = self.store().delivery(*id).unwrap();
            prop_assert!(d.is_some(), "delivery {id} lost");
            let d = d.unwrap();
            let ok = match m {
                M::Pending { due } => d.status == DeliveryStatus::Pending && d.due_at == *due,
                M::InFlight { token, until } => {
                    d.status == DeliveryStatus::InFlight
                        && d.lease
                            .as_ref()
                            .is_some_and(|l| l.token == *token && l.until == *until)
                }
                M::Delivered => d.status == DeliveryStatus::Delivered,
                M::Failed => d.status == DeliveryStatus::Failed,
            };
            prop_assert!(ok, "model {m:?} but store has {d:?}");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn nothing_lost_nothing_doubled(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = World {
            dir, store: Some(store), now: t("2026-11-29T00:00:00Z"),
            model: HashMap::new(), held: Vec::new(), stale: Vec::new(), titles: 0,
        };
        for op in &ops {
            w.apply(op)?;
            w.check()?;
        }
        // Drain: every worker is gone, the clock moves past every lease and retry.
        w.held.clear();
        for _ in 0..10 {
            w.now += Duration::seconds(600);
            let claims = w.store().claim(Queue::Webhook, w.now, Duration::seconds(LEASE), usize::MAX, "drain", &mut |_| true).unwrap();
            for c in claims {
                w.store().complete(&c, w.now).unwrap();
                w.model.insert(c.delivery.id, M::Delivered);
            }
        }
        w.check()?;
        for (id, m) in &w.model {
            prop_assert!(matches!(m, M::Delivered | M::Failed), "{id} ended {m:?}");
        }
    }
}
