//! siar's domain types, shared by every other crate.
//!
//! - [`release`]: a press release as parsed ([`ReleaseContent`]), as stored ([`Release`]) and as
//!   versioned ([`Version`]); its status, provenance and parse warnings.
//! - [`delivery`]: one unit of fan-out work ([`Delivery`]) owed to a [`Target`] (a partner, a
//!   mailing list or one recipient), and the [`Router`] contract that decides who is owed what.
//! - [`text`]: the small text rules every input path shares (XML-safe characters, slugs,
//!   category names).
//!
//! Pure data and validation: nothing here does I/O.
//!
//! ```
//! use siar_model::{Category, ReleaseId};
//! let id = ReleaseId::new();
//! assert_eq!(id.to_string().parse::<ReleaseId>().unwrap(), id);
//! assert_eq!(Category::parse("Pemilu 2024").unwrap().as_str(), "pemilu-2024");
//! ```

mod delivery;
mod ids;
mod release;
mod subscriber;
pub mod text;

pub use delivery::{
    Attempt, Delivery, DeliveryStatus, Event, Lease, Planned, Queue, Router, Target,
    TargetParseError,
};
pub use ids::{DeliveryId, IdParseError, ReleaseId};
pub use release::{
    Attachment, AuditEntry, Category, CategoryError, EventDate, Provenance, Release,
    ReleaseContent, Retraction, Source, Status, Version, Warning, YearSource,
};
pub use subscriber::{normalize_address, ConsentEvent, Subscriber, SubscriberStatus};
