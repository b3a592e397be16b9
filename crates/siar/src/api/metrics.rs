//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of what an operator on call
//! needs first — releases, feed requests and 304s, queue depth and age per channel, partner
//! webhooks (attempts by outcome and their latency, disabled, breaker, queue depth, oldest due)
//! and mail (messages by list and outcome, the relay's replies by class, sessions and pace,
//! subscribers by list and status).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::App;

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The series of one histogram; `labels` is empty or ends with a comma (`partner="p1",`).
fn histogram(out: &mut String, name: &str, labels: &str, h: &siar_fanout::histogram::Snapshot) {
    for (le, n) in h.buckets {
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", h.count);
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum_secs);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// The metrics, rendered on each scrape from the engines' state and counters.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut out = String::with_capacity(4096);
    let now = app.clock.now();
    for (name, help, v) in [
        (
            "siar_releases_ingested_total",
            "New releases stored since start.",
            &app.ingested,
        ),
        (
            "siar_releases_repeated_total",
            "Inputs recognised as releases already stored (idempotency).",
            &app.repeats,
        ),
        (
            "siar_releases_published_total",
            "Releases published since start (at once, or when their publish_at came).",
            &app.published,
        ),
    ] {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
    family(
        &mut out,
        "siar_feed_requests_total",
        "counter",
        "Feed requests answered since start.",
    );
    let _ = writeln!(out, "siar_feed_requests_total {}", app.feeds.requests.get());
    family(
        &mut out,
        "siar_feed_not_modified_total",
        "counter",
        "Feed requests answered 304 Not Modified.",
    );
    let _ = writeln!(
        out,
        "siar_feed_not_modified_total {}",
        app.feeds.not_modified.get()
    );
    queue_families(&mut out, &app, now);
    if let Some(engine) = app.webhooks.get() {
        let stats = engine.attempt_stats();
        family(
            &mut out,
            "siar_webhook_attempts_total",
            "counter",
            "Webhook attempts by partner and outcome (delivered, retry, failed, gone) since start.",
        );
        for st in &stats {
            for (outcome, n) in st.outcomes {
                let _ = writeln!(
                    out,
                    "siar_webhook_attempts_total{{partner=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(&st.partner)
                );
            }
        }
        family(
            &mut out,
            "siar_webhook_attempt_seconds",
            "histogram",
            "How long webhook attempts took.",
        );
        for st in &stats {
            let labels = format!("partner=\"{}\",", label(&st.partner));
            histogram(
                &mut out,
                "siar_webhook_attempt_seconds",
                &labels,
                &st.latency,
            );
        }
        match engine.status(&app) {
            Ok(partners) => {
                family(
                    &mut out,
                    "siar_partner_disabled",
                    "gauge",
                    "1 while a partner is disabled (a 410, or days of nothing but failures).",
                );
                for p in &partners {
                    let _ = writeln!(
                        out,
                        "siar_partner_disabled{{partner=\"{}\"}} {}",
                        label(&p.id),
                        u8::from(p.disabled.is_some())
                    );
                }
                family(
                    &mut out,
                    "siar_partner_breaker_open",
                    "gauge",
                    "1 while a partner's circuit breaker pauses its attempts.",
                );
                for p in &partners {
                    let _ = writeln!(
                        out,
                        "siar_partner_breaker_open{{partner=\"{}\"}} {}",
                        label(&p.id),
                        u8::from(p.breaker != "closed")
                    );
                }
                family(
                    &mut out,
                    "siar_partner_consecutive_failures",
                    "gauge",
                    "Failed attempts in a row.",
                );
                for p in &partners {
                    let _ = writeln!(
                        out,
                        "siar_partner_consecutive_failures{{partner=\"{}\"}} {}",
                        label(&p.id),
                        p.consecutive_failures
                    );
                }
                family(
                    &mut out,
                    "siar_partner_queue_depth",
                    "gauge",
                    "Webhook deliveries waiting or in flight.",
                );
                for p in &partners {
                    let _ = writeln!(
                        out,
                        "siar_partner_queue_depth{{partner=\"{}\"}} {}",
                        label(&p.id),
                        p.queued
                    );
                }
                family(&mut out, "siar_partner_oldest_due_seconds", "gauge", "How long the partner's earliest waiting delivery has been due (0: none overdue).");
                for p in &partners {
                    let age = p.next_due.map_or(0.0, |t| {
                        ((now - t).num_milliseconds().max(0) as f64) / 1000.0
                    });
                    let _ = writeln!(
                        out,
                        "siar_partner_oldest_due_seconds{{partner=\"{}\"}} {age}",
                        label(&p.id)
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the partners' state for /metrics.")
            }
        }
    }
    if let Some(mail) = app.mail.get() {
        let s = &mail.stats;
        family(&mut out, "siar_mail_messages_total", "counter", "List mails by list and outcome since start: sent, retried (a 4xx or the relay unreachable), bounced (5xx to RCPT), failed, skipped (left the list or the release was withdrawn first).");
        let others = (!s.other.by_outcome().iter().all(|(_, n)| *n == 0))
            .then_some(("(other)".to_owned(), &s.other));
        for (list, counters) in s.lists.iter().map(|(l, c)| (l.clone(), c)).chain(others) {
            for (outcome, n) in counters.by_outcome() {
                let _ = writeln!(
                    out,
                    "siar_mail_messages_total{{list=\"{}\",outcome=\"{outcome}\"}} {n}",
                    label(&list)
                );
            }
        }
        family(
            &mut out,
            "siar_smtp_replies_total",
            "counter",
            "Messages (list mails and confirmations) by the relay's answer: 2xx, 4xx, 5xx, network (no answer: refused, timed out, cut off), client (refused before sending).",
        );
        for (class, n) in mail.relay.replies() {
            let _ = writeln!(out, "siar_smtp_replies_total{{class=\"{class}\"}} {n}");
        }
        family(
            &mut out,
            "siar_smtp_send_seconds",
            "histogram",
            "How long each message took with the relay (a new session's connection included).",
        );
        histogram(
            &mut out,
            "siar_smtp_send_seconds",
            "",
            &mail.relay.latency.snapshot(),
        );
        family(
            &mut out,
            "siar_mail_confirmations_sent_total",
            "counter",
            "Subscription confirmation mails the relay accepted.",
        );
        let _ = writeln!(
            out,
            "siar_mail_confirmations_sent_total {}",
            s.confirmations.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "siar_smtp_sessions_opened_total",
            "counter",
            "SMTP sessions opened to the relay (rotation and reconnects included).",
        );
        let _ = writeln!(
            out,
            "siar_smtp_sessions_opened_total {}",
            mail.relay.sessions_opened()
        );
        family(
            &mut out,
            "siar_smtp_rate_per_second",
            "gauge",
            "The pace towards the relay now (below smtp.rate_per_second after a 4xx).",
        );
        let _ = writeln!(
            out,
            "siar_smtp_rate_per_second {}",
            mail.relay.current_rate()
        );
        family(
            &mut out,
            "siar_list_subscribers",
            "gauge",
            "Subscribers by list and status.",
        );
        for l in &app.config.lists {
            match app.store.subscriber_counts(&l.id) {
                Ok(counts) => {
                    for (status, n) in counts {
                        let _ = writeln!(
                            out,
                            "siar_list_subscribers{{list=\"{}\",status=\"{status}\"}} {n}",
                            label(&l.id)
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Could not count subscribers for /metrics."),
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Depth and age of each delivery queue: webhooks, list mailings, single mails.
fn queue_families(out: &mut String, app: &App, now: chrono::DateTime<chrono::Utc>) {
    let mut rows = Vec::new();
    for (queue, channel) in [
        (siar_model::Queue::Webhook, "webhook"),
        (siar_model::Queue::List, "list"),
        (siar_model::Queue::Email, "email"),
    ] {
        match app.store.queue_stats(queue, now) {
            Ok(s) => rows.push((channel, s)),
            Err(e) => tracing::warn!(error = %e, "Could not read a queue for /metrics."),
        }
    }
    // Per channel: depth, due now, age of the oldest due (seconds).
    let values: Vec<(&str, [f64; 3])> = rows
        .iter()
        .map(|(channel, s)| {
            let age = s.oldest_due.map_or(0.0, |t| {
                ((now - t).num_milliseconds().max(0) as f64) / 1000.0
            });
            (*channel, [s.depth as f64, s.due_now as f64, age])
        })
        .collect();
    for (i, (name, help)) in [
        (
            "siar_queue_depth",
            "Deliveries waiting or in flight, by channel.",
        ),
        (
            "siar_queue_due",
            "Of those, deliveries due now (in flight included), by channel.",
        ),
        (
            "siar_queue_oldest_due_seconds",
            "How long the earliest delivery due has been waiting, by channel (0: none overdue).",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        family(out, name, "gauge", help);
        for (channel, v) in &values {
            let _ = writeln!(out, "{name}{{channel=\"{channel}\"}} {}", v[i]);
        }
    }
}
