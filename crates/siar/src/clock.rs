//! Time, behind a trait so scheduling is tested with a controlled clock, never with sleeps.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    /// Millisecond precision: what the store's time indexes keep.
    fn now(&self) -> DateTime<Utc> {
        chrono::SubsecRound::trunc_subsecs(Utc::now(), 3)
    }
}

/// A clock that starts at `base` and advances with tokio's clock. Under
/// `tokio::time::pause()` it stands still until the test advances it, and every tokio timer
/// siar sets agrees with it.
pub struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base: DateTime<Utc>) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.base + elapsed
    }
}

/// Sleeps until `at` on `clock`, waking at least every minute to re-read the clock (the wall
/// clock may jump).
pub async fn sleep_until(clock: &dyn Clock, at: DateTime<Utc>) {
    let wait = (at - clock.now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait.min(std::time::Duration::from_secs(60))).await;
}
