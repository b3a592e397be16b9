//! Signed tokens in the links siar mails: confirming a subscription (expiring) and
//! unsubscribing (lasting: an old mail's link must still work). Each names the list and the
//! address and carries an HMAC-SHA256 under a key kept in the store, so nobody can make a link
//! for someone else's address.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use siar_store::Store;

/// The store record holding the key.
const KEY_NAME: &str = "mail-token-key";

/// The HMAC key for mail links.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub list: String,
    pub address: String,
    /// For a confirmation: when it was asked for.
    pub requested_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the link is damaged or was not made by this server")]
    Invalid,
    #[error("the link has expired")]
    Expired,
}

impl TokenKey {
    /// The key kept in the store, made (and flushed) on first use.
    pub fn load_or_create(store: &Store) -> siar_store::Result<Self> {
        if let Some(hex_key) = store.meta_get::<String>(KEY_NAME)? {
            if let Ok(bytes) = hex::decode(&hex_key) {
                if let Ok(k) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(Self(k));
                }
            }
            tracing::warn!("The stored mail-token key is unreadable; making a new one (older mail links stop working).");
        }
        let key: [u8; 32] = rand::random();
        store.meta_put(KEY_NAME, &hex::encode(key))?;
        store.flush_blocking()?;
        Ok(Self(key))
    }

    fn sign(&self, purpose: &str, payload: &[u8]) -> Vec<u8> {
        // A fixed-size key is always accepted by HMAC.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac.finalize().into_bytes()[..20].to_vec()
    }

    fn make(&self, purpose: &str, fields: &[&str]) -> String {
        let payload = fields.join("\n");
        format!(
            "{}.{}",
            B64.encode(payload.as_bytes()),
            B64.encode(self.sign(purpose, payload.as_bytes()))
        )
    }

    fn open(&self, purpose: &str, token: &str) -> Result<Vec<String>, TokenError> {
        let (p, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = B64.decode(p).map_err(|_| TokenError::Invalid)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Invalid)?;
        let want = self.sign(purpose, &payload);
        if want.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                want.as_slice(),
                sig.as_slice(),
            ))
        {
            return Err(TokenError::Invalid);
        }
        let text = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
        Ok(text.split('\n').map(str::to_owned).collect())
    }

    /// The token in a confirmation link, valid until `expires`.
    pub fn confirm(
        &self,
        list: &str,
        address: &str,
        requested_at: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> String {
        self.make(
            "confirm",
            &[
                list,
                address,
                &requested_at.timestamp_millis().to_string(),
                &expires.timestamp().to_string(),
            ],
        )
    }

    pub fn open_confirm(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let f = self.open("confirm", token)?;
        let [list, address, requested, expires] = f.as_slice() else {
            return Err(TokenError::Invalid);
        };
        let expires: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        if now.timestamp() > expires {
            return Err(TokenError::Expired);
        }
        let requested = requested
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or(TokenError::Invalid)?;
        Ok(Claims {
            list: list.clone(),
            address: address.clone(),
            requested_at: Some(requested),
        })
    }

    /// The token in a recipient's unsubscribe link: the same in every mail they get.
    pub fn unsubscribe(&self, list: &str, address: &str) -> String {
        self.make("unsubscribe", &[list, address])
    }

    pub fn open_unsubscribe(&self, token: &str) -> Result<Claims, TokenError> {
        let f = self.open("unsubscribe", token)?;
        let [list, address] = f.as_slice() else {
            return Err(TokenError::Invalid);
        };
        Ok(Claims {
            list: list.clone(),
            address: address.clone(),
            requested_at: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_expire_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = TokenKey::load_or_create(&store).unwrap();
        // The key survives a reopen: old links keep working.
        assert_eq!(TokenKey::load_or_create(&store).unwrap().0, key.0);
        let now = Utc::now();
        let t = key.confirm("jurnalis", "a@b.id", now, now + chrono::Duration::hours(72));
        let c = key.open_confirm(&t, now).unwrap();
        assert_eq!(
            (c.list.as_str(), c.address.as_str()),
            ("jurnalis", "a@b.id")
        );
        assert_eq!(
            key.open_confirm(&t, now + chrono::Duration::hours(73)),
            Err(TokenError::Expired)
        );
        // Another address under the same signature, or a different purpose, is refused.
        let (_, sig) = t.split_once('.').unwrap();
        let forged = format!("{}.{sig}", B64.encode(b"jurnalis\nc@d.id\n0\n9999999999"));
        assert_eq!(key.open_confirm(&forged, now), Err(TokenError::Invalid));
        let u = key.unsubscribe("jurnalis", "a@b.id");
        assert_eq!(key.open_unsubscribe(&u).unwrap().address, "a@b.id");
        assert_eq!(key.open_confirm(&u, now), Err(TokenError::Invalid));
        assert_eq!(key.open_unsubscribe(&t), Err(TokenError::Invalid));
        assert_eq!(key.open_unsubscribe("garbage"), Err(TokenError::Invalid));
    }
}
