//! Permanent, time-sortable identifiers.
//!
//! Both ids are ULIDs: 48 bits of milliseconds then 80 random bits, written as 26 Crockford
//! base-32 characters. Sorting the text or the 16 bytes sorts by creation time, which the store
//! relies on for its indexes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a valid id (expected 26 characters of Crockford base-32)")]
pub struct IdParseError {
    input: String,
}

/// Declares a type's OpenAPI schema as a plain string, for types that serialise as text.
macro_rules! string_schema {
    ($name:ty, $description:literal, $example:literal) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use string_schema;

macro_rules! ulid_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Ulid);

        impl $name {
            /// A fresh id for the current instant.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Ulid::new())
            }

            /// A fresh id whose time part is `at` (used when the clock is not the system's).
            pub fn at(at: chrono::DateTime<chrono::Utc>) -> Self {
                let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                Self(Ulid::from_parts(ms, rand_bits()))
            }

            pub fn to_bytes(self) -> [u8; 16] {
                self.0.to_bytes()
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Ulid::from_bytes(bytes))
            }

            /// Milliseconds since the Unix epoch at which the id was made.
            pub fn timestamp_ms(self) -> u64 {
                self.0.timestamp_ms()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ulid::from_string(s.trim())
                    .map(Self)
                    .map_err(|_| IdParseError {
                        input: s.chars().take(64).collect(),
                    })
            }
        }

        crate::ids::string_schema!(
            $name,
            "A ULID: 26 Crockford base-32 characters, time-sortable.",
            "01J8ZQ4G5N6W4P8Y2D9T3K7M1C"
        );
    };
}

fn rand_bits() -> u128 {
    // Borrow the random part of a fresh ULID rather than pulling in a second RNG.
    Ulid::new().random()
}

ulid_id!(
    ReleaseId,
    "The permanent id of a release, given at first ingest."
);
ulid_id!(DeliveryId, "The id of one delivery in the outbox.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_as_text_and_bytes() {
        let early = ReleaseId::at(chrono::DateTime::from_timestamp(1_600_000_000, 0).unwrap());
        let late = ReleaseId::at(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
        assert!(early.to_bytes() < late.to_bytes());
        assert_eq!(ReleaseId::from_bytes(late.to_bytes()), late);
    }

    #[test]
    fn bad_id_text_is_an_error() {
        assert!("not-an-id".parse::<ReleaseId>().is_err());
        assert!("".parse::<DeliveryId>().is_err());
    }
}
