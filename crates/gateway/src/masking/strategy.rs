//! The strategies that replace a masked value, with the server's masking key, and each
//! session's memo of the keyed hashes it made.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::BufMut;
use ring::hmac;
use siphasher::sip128::{Hasher128, SipHasher13};

use super::detect::{Detector, Scan};

pub use jitgate_core::masking::{REDACTED, Strategy};

/// What `partial` writes in place of hidden characters, a slice at a time.
const STARS: &str = "********************************";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Applies strategies with the server's masking key.
pub struct Masker {
    /// HMAC-SHA-256 keyed once (its inner and outer states computed up front).
    keyed: hmac::Key,
}

impl Masker {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            keyed: hmac::Key::new(hmac::HMAC_SHA256, &key),
        }
    }

    /// The replacement for `value`, or `None` for NULL. `memo` remembers hashes already made.
    pub fn replace(&self, strategy: Strategy, value: &str, memo: &mut HashMemo) -> Option<String> {
        let mut out = Vec::new();
        self.write(strategy, value.as_bytes(), memo, &mut out)
            .then(|| String::from_utf8(out).expect("replacements are text"))
    }

    /// Appends the replacement for the text `value` to `out`; `false` (with nothing appended)
    /// means NULL. The gateway writes masked values straight into the row it sends, so only a
    /// partial mask looks at the characters: bytes that are not UTF-8 become stars whole. The
    /// replacement is always ASCII.
    pub fn write(
        &self,
        strategy: Strategy,
        value: &[u8],
        memo: &mut HashMemo,
        out: &mut impl BufMut,
    ) -> bool {
        match strategy {
            Strategy::Redact => out.put_slice(REDACTED.as_bytes()),
            Strategy::Partial { keep } => {
                // How many characters, how many kept (never more than half), and where the
                // kept tail begins: by index for ASCII; bytes that are not UTF-8 keep nothing.
                let (n, kept, tail) = if value.is_ascii() {
                    let kept = keep.min(value.len() / 2);
                    (value.len(), kept, value.len() - kept)
                } else if let Ok(text) = std::str::from_utf8(value) {
                    let n = text.chars().count();
                    let kept = keep.min(n / 2);
                    let tail = text
                        .char_indices()
                        .nth(n - kept)
                        .map_or(text.len(), |(i, _)| i);
                    (n, kept, tail)
                } else {
                    (value.len(), 0, value.len())
                };
                let mut stars = n - kept;
                while stars > 0 {
                    let k = stars.min(STARS.len());
                    out.put_slice(&STARS.as_bytes()[..k]);
                    stars -= k;
                }
                out.put_slice(&value[tail..]);
            }
            Strategy::Hash => {
                let mut hex = [0u8; 16];
                for (pair, b) in hex.chunks_exact_mut(2).zip(self.hash(value, memo)) {
                    pair[0] = HEX[(b >> 4) as usize];
                    pair[1] = HEX[(b & 15) as usize];
                }
                out.put_slice(&hex);
            }
            Strategy::Null => return false,
        }
        true
    }

    /// The first 8 bytes of the value's HMAC-SHA-256, written out as 16 hex characters.
    fn hash(&self, value: &[u8], memo: &mut HashMemo) -> [u8; 8] {
        let fingerprint = memo.fingerprint(value);
        if let Some(tag) = memo.seen.get(&fingerprint) {
            return *tag;
        }
        let tag: [u8; 8] = hmac::sign(&self.keyed, value).as_ref()[..8]
            .try_into()
            .expect("HMAC-SHA-256 gives 32 bytes");
        if memo.seen.len() >= HashMemo::ENTRIES {
            memo.seen.clear();
        }
        memo.seen.insert(fingerprint, tag);
        tag
    }

    /// `text` with every span the detectors find replaced, and how many spans each detector
    /// found. `None` means the value must become NULL (the strategy is `Null`).
    pub fn scrub(
        &self,
        detectors: &[Detector],
        strategy: Strategy,
        text: &str,
        found: &mut [u32; 6],
        memo: &mut HashMemo,
    ) -> Option<Option<String>> {
        let mut scan = Scan::of(text.as_bytes());
        let mut spans: Vec<(usize, usize, Detector)> = Vec::new();
        for &d in detectors {
            if !d.plausible(&mut scan) {
                continue;
            }
            for (s, e) in d.find_unfiltered(text) {
                // A span inside one already taken (a card number inside a private key) is
                // masked with it.
                if !spans.iter().any(|&(a, b, _)| s < b && a < e) {
                    spans.push((s, e, d));
                }
            }
        }
        if spans.is_empty() {
            return None;
        }
        for &(_, _, d) in &spans {
            found[d as usize] += 1;
        }
        if strategy == Strategy::Null {
            return Some(None);
        }
        spans.sort_by_key(|&(s, ..)| s);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e, _) in spans {
            out.push_str(&text[at..s]);
            out.push_str(
                &self
                    .replace(strategy, &text[s..e], memo)
                    .unwrap_or_default(),
            );
            at = e;
        }
        out.push_str(&text[at..]);
        Some(Some(out))
    }
}

/// The `hash` strategy's results for values one session has masked lately, so a value that
/// comes back (the same query again, a join key on every row) costs one SipHash pass instead
/// of an HMAC: two SHA-256 blocks, about 1 µs on a CPU without SHA instructions. It keeps no
/// plaintext. Each value is known by a 128-bit SipHash fingerprint under keys drawn at random
/// for this memo, so nobody can test a guess against it, and two values never share an entry
/// by chance. It starts afresh when full; it only allocates once something is hashed.
pub struct HashMemo {
    keys: (u64, u64),
    seen: HashMap<u128, [u8; 8], BuildHasherDefault<Fingerprinted>>,
}

/// Hashes a key that is already a keyed fingerprint by taking its low half: hashing it again
/// would double the memo's cost and add nothing.
#[derive(Default)]
struct Fingerprinted(u64);

impl Hasher for Fingerprinted {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u128` keys reach here, through `write_u128`; anything else still hashes.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl HashMemo {
    /// At most this many values remembered (about 100 KiB).
    const ENTRIES: usize = 4096;

    pub fn new() -> Self {
        Self {
            keys: rand::random(),
            seen: HashMap::default(),
        }
    }

    fn fingerprint(&self, value: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        h.write(value);
        h.finish128().as_u128()
    }
}

impl Default for HashMemo {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_replace_as_configured() {
        let m = Masker::new([7; 32]);
        let mut memo = HashMemo::new();
        assert_eq!(
            m.replace(Strategy::Redact, "secret", &mut memo).as_deref(),
            Some(REDACTED)
        );
        assert_eq!(
            m.replace(Strategy::Partial { keep: 4 }, "4111111111111111", &mut memo)
                .as_deref(),
            Some("************1111")
        );
        // Never more than half of a short value.
        assert_eq!(
            m.replace(Strategy::Partial { keep: 4 }, "abc", &mut memo)
                .as_deref(),
            Some("**c")
        );
        // Characters, not bytes, of other text; bytes that are not UTF-8 keep nothing.
        assert_eq!(
            m.replace(Strategy::Partial { keep: 2 }, "Zoë Müller", &mut memo)
                .as_deref(),
            Some("********er")
        );
        let mut out = Vec::new();
        assert!(m.write(
            Strategy::Partial { keep: 2 },
            b"ab\xff\xfecd",
            &mut memo,
            &mut out
        ));
        assert_eq!(out, b"******");
        assert_eq!(m.replace(Strategy::Null, "x", &mut memo), None);
        let a = m
            .replace(Strategy::Hash, "alice@example.com", &mut memo)
            .unwrap();
        // HMAC-SHA-256, first 8 bytes in hex: pinned, so masked values stay joinable with
        // those of earlier versions (Python: hmac.new(bytes([7]*32), b"alice@example.com",
        // hashlib.sha256).hexdigest()[:16]).
        assert_eq!(a, "09870f7a55556328");
        // Remembered, and the same again.
        assert_eq!(memo.seen.len(), 1);
        assert_eq!(
            m.replace(Strategy::Hash, "alice@example.com", &mut memo)
                .unwrap(),
            a
        );
        assert_eq!(
            m.replace(Strategy::Hash, "alice@example.com", &mut HashMemo::new())
                .unwrap(),
            a
        );
        assert_ne!(
            Masker::new([8; 32])
                .replace(Strategy::Hash, "alice@example.com", &mut HashMemo::new())
                .unwrap(),
            a
        );
        assert_ne!(
            m.replace(Strategy::Hash, "alice@example.co", &mut memo)
                .unwrap(),
            a
        );

        let mut found = [0; 6];
        let out = m
            .scrub(
                &[Detector::Card, Detector::Email],
                Strategy::Partial { keep: 4 },
                "paid with 4111-1111-1111-1111 by bob@example.com",
                &mut found,
                &mut memo,
            )
            .unwrap()
            .unwrap();
        assert_eq!(out, "paid with ***************1111 by ***********.com");
        assert_eq!(found[Detector::Card as usize], 1);
        assert_eq!(found[Detector::Email as usize], 1);
        assert!(
            m.scrub(
                &[Detector::Card],
                Strategy::Redact,
                "nothing here",
                &mut found,
                &mut memo
            )
            .is_none()
        );
    }
}
