//! Identifiers and secrets made from the operating system's random source.

use rand::Rng;
use rand::distr::Alphanumeric;

/// A random identifier such as `req_7f3kq2m9x1ab` (12 lowercase alphanumerics, ~62 bits).
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{tail}")
}

/// A new API token: `jg_` and 43 random alphanumerics (~256 bits).
pub fn new_token() -> String {
    new_secret("jg")
}

/// A secret such as `PREFIX_` and 43 random alphanumerics (~256 bits).
pub fn new_secret(prefix: &str) -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect();
    format!("{prefix}_{tail}")
}
