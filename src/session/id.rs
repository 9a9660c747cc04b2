use std::fmt;

use crate::identity::digest;

/// Bytes of CSPRNG output in an id: 192 bits.
const ID_BYTES: usize = 24;
/// Length of an id's text: lowercase hex.
pub(crate) const ID_LEN: usize = ID_BYTES * 2;

/// A session id: 192 bits from a CSPRNG (rand's `ThreadRng`: ChaCha12,
/// seeded and periodically reseeded from the operating system), as 48
/// lowercase hex characters (URL- and cookie-safe).
///
/// `Debug` and `Display` print a digest, never the id, so ids stay out of
/// logs; [`expose`](Self::expose) gives the id itself. Kept inline, so
/// reading one from a request allocates nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    pub(crate) fn generate() -> Self {
        let mut id = [0u8; ID_LEN];
        crate::identity::fill_random_hex(&mut id);
        Self(id)
    }

    /// Accepts only text shaped like an id this server issues; anything else
    /// is not looked up at all.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let id: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        // Every byte checked, no early exit: the loop vectorizes.
        let hex = id
            .iter()
            .fold(true, |hex, &b| hex & matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        hex.then_some(Self(id))
    }

    /// The id itself, for the transport (cookie or header). Do not log it.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ids are hex")
    }

    /// A non-reversible digest of the id, safe to log.
    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.digest())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert!(
            !format!("{a:?} {a}").contains(a.expose()),
            "ids never print in clear"
        );
    }

    #[test]
    fn foreign_text_is_not_an_id() {
        for bad in [
            "",
            "abc",
            &"g".repeat(ID_LEN),
            &"A".repeat(ID_LEN),
            &"a".repeat(ID_LEN + 1),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
