//! Detectors that find sensitive values in text. Each finds candidates with a regular
//! expression and keeps only those that pass the format's own check (Luhn for card numbers,
//! mod-97 for IBANs, the issuing rules for US SSNs), so a random digit string that fails the
//! checksum is left alone.

use std::sync::LazyLock;

use regex::Regex;

/// What a detector looks for in text values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    Email,
    /// Payment card numbers: 13 to 19 digits, optionally grouped by spaces or dashes,
    /// Luhn-checked.
    Card,
    /// International bank account numbers, optionally grouped by spaces, mod-97-checked.
    Iban,
    /// US social security numbers written `AAA-GG-SSSS` (or with spaces), by the SSA's rules.
    Ssn,
    /// Phone numbers in international form (`+` and 8 to 15 digits) or North American form
    /// (`(555) 123-4567`, `555-123-4567`).
    Phone,
    /// AWS access key IDs, JSON Web Tokens, and PEM private key blocks.
    Secret,
}

impl Detector {
    pub const ALL: [Detector; 6] = [
        Detector::Email,
        Detector::Card,
        Detector::Iban,
        Detector::Ssn,
        Detector::Phone,
        Detector::Secret,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Card => "card",
            Detector::Iban => "iban",
            Detector::Ssn => "ssn",
            Detector::Phone => "phone",
            Detector::Secret => "secret",
        }
    }

    pub fn parse(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether `text` could hold what this detector finds, judged from a single pass over it:
    /// most values hold nothing, and this spares them the regular expressions.
    pub(super) fn plausible(self, s: &mut Scan<'_>) -> bool {
        if s.text.len() < self.min_len() {
            return false;
        }
        match self {
            Detector::Email => s.text.contains(&b'@'),
            Detector::Card => s.digits() >= 13,
            Detector::Iban => s.digits() >= 2 && s.upper() >= 2,
            Detector::Ssn => s.digits() >= 9,
            Detector::Phone => s.digits() >= 7,
            Detector::Secret => {
                s.upper() >= 2
                    && [&b"AKIA"[..], b"ASIA", b"eyJ", b"-----BEGIN"]
                        .iter()
                        .any(|p| s.text.windows(p.len()).any(|w| w == *p))
            }
        }
    }

    /// The length of the shortest text this detector could find anything in: a value shorter
    /// than every detector's is passed without looking at it.
    pub fn min_len(self) -> usize {
        match self {
            Detector::Email => 6,
            Detector::Card => 13,
            Detector::Iban => 15,
            Detector::Ssn => 11,
            Detector::Phone => 9,
            Detector::Secret => 3,
        }
    }

    /// Whether any of `detectors` could find something in these bytes: counting, no UTF-8
    /// check, no regular expression. Most values stop here.
    pub fn any_plausible(detectors: &[Detector], bytes: &[u8]) -> bool {
        let mut scan = Scan::of(bytes);
        detectors.iter().any(|d| d.plausible(&mut scan))
    }

    /// Byte ranges in `text` that this detector finds, in order, not overlapping.
    pub fn find(self, text: &str) -> Vec<(usize, usize)> {
        if !self.plausible(&mut Scan::of(text.as_bytes())) {
            return Vec::new();
        }
        self.find_unfiltered(text)
    }

    pub(super) fn find_unfiltered(self, text: &str) -> Vec<(usize, usize)> {
        let (re, check): (&Regex, fn(&str) -> bool) = match self {
            Detector::Email => (&EMAIL, |_| true),
            Detector::Card => (&CARD, luhn_ok),
            Detector::Iban => (&IBAN, iban_ok),
            Detector::Ssn => (&SSN, ssn_ok),
            Detector::Phone => (&PHONE, phone_ok),
            Detector::Secret => (&SECRET, |_| true),
        };
        let mut spans = Vec::new();
        for m in re.find_iter(text) {
            let found = m.as_str();
            if check(found) {
                spans.push((m.start(), m.end()));
                continue;
            }
            // Separators may have joined a number to whatever follows it ("4111 1111 1111 1111
            // 12"): try the shorter runs that end at a separator, longest first.
            let cut = found
                .match_indices([' ', '-'])
                .map(|(i, _)| i)
                .rev()
                .find(|&i| check(&found[..i]));
            if let Some(i) = cut {
                spans.push((m.start(), m.start() + i));
            }
        }
        spans
    }
}

/// What the detectors' prefilters count in a value, each count made once and only when a
/// detector asks (the counting loops vectorise).
pub(super) struct Scan<'a> {
    text: &'a [u8],
    digits: Option<usize>,
    upper: Option<usize>,
}

impl<'a> Scan<'a> {
    pub(super) fn of(text: &'a [u8]) -> Scan<'a> {
        Scan {
            text,
            digits: None,
            upper: None,
        }
    }

    fn digits(&mut self) -> usize {
        let text = self.text;
        *self
            .digits
            .get_or_insert_with(|| count_in_range(text, b'0', b'9'))
    }

    fn upper(&mut self) -> usize {
        let text = self.text;
        *self
            .upper
            .get_or_insert_with(|| count_in_range(text, b'A', b'Z'))
    }
}

/// How many bytes of `text` lie in `lo..=hi` (an ASCII range), eight at a time: every text
/// value of every row passes this prefilter, and values are too short for the compiler's own
/// vector loop to start.
fn count_in_range(text: &[u8], lo: u8, hi: u8) -> usize {
    debug_assert!(lo <= hi && hi < 0x80);
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let spread = |b: u8| u64::from(b) * 0x0101_0101_0101_0101;
    // Each 7-bit byte plus `0x80 - lo` reaches the high bit when it is >= lo, plus
    // `0x7f - hi` when it is > hi; neither sum carries into the next byte.
    let (at_least_lo, above_hi) = (spread(0x80 - lo), spread(0x7f - hi));
    let count8 = |x: u64| {
        let y = x & LOW7;
        let inside = (y + at_least_lo) & !(y + above_hi) & !x & HIGH;
        // One bit a byte, summed into the top byte (a multiply; no popcount instruction on
        // baseline x86-64).
        ((inside >> 7).wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize
    };
    let mut chunks = text.chunks_exact(8);
    let mut n = 0;
    for chunk in &mut chunks {
        n += count8(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
    }
    n + chunks
        .remainder()
        .iter()
        .filter(|b| (lo..=hi).contains(b))
        .count()
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a built-in pattern compiles")
}

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"));
// Groups separated by one space or dash.
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9](?:[ -]?[0-9]){12,18}\b"));
static IBAN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b"));
static SSN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}\b"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\+[0-9](?:[ .-]?[0-9]){7,14}\b|(?:\([0-9]{3}\) ?|\b[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}\b)",
    )
});
static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?s)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
        r"|\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}",
        r"|-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z]+ )*PRIVATE KEY-----",
    ))
});

fn digits(s: &str) -> impl DoubleEndedIterator<Item = u32> + '_ {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
}

/// The Luhn check over the digits of `s` (13 to 19 of them), read from the right without
/// collecting them: it runs on every candidate the card pattern finds.
pub fn luhn_ok(s: &str) -> bool {
    let (mut n, mut sum) = (0usize, 0u32);
    for (i, x) in digits(s).rev().enumerate() {
        sum += if i % 2 == 1 {
            let y = x * 2;
            if y > 9 { y - 9 } else { y }
        } else {
            x
        };
        n = i + 1;
    }
    (13..=19).contains(&n) && sum.is_multiple_of(10)
}

/// ISO 13616: move the first four characters to the end, letters to numbers, mod 97 == 1.
pub fn iban_ok(s: &str) -> bool {
    let compact: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    iban_remainder(&compact) == Some(1)
}

/// The IBAN as a number mod 97, its first four characters moved to the end and letters read
/// as 10–35; `None` if a character is neither digit nor letter.
fn iban_remainder(compact: &[char]) -> Option<u32> {
    compact[4..]
        .iter()
        .chain(&compact[..4])
        .try_fold(0u32, |rem, c| {
            let v = c.to_digit(36)?;
            Some(if v < 10 {
                (rem * 10 + v) % 97
            } else {
                (rem * 100 + v) % 97
            })
        })
}

/// Area 001–899 except 666, group 01–99, serial 0001–9999.
pub fn ssn_ok(s: &str) -> bool {
    let mut d = [0u32; 9];
    let mut n = 0;
    for x in digits(s) {
        if n == 9 {
            return false;
        }
        d[n] = x;
        n += 1;
    }
    if n != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5] * 1000 + d[6] * 100 + d[7] * 10 + d[8];
    (1..900).contains(&area) && area != 666 && group != 0 && serial != 0
}

fn phone_ok(s: &str) -> bool {
    (8..=15).contains(&digits(s).count()) || !s.starts_with('+')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn with_luhn(body: &[u32]) -> String {
        // The check digit that makes body + digit pass.
        for check in 0..10 {
            let s: String = body
                .iter()
                .chain(std::iter::once(&check))
                .map(|d| char::from_digit(*d, 10).unwrap())
                .collect();
            if luhn_ok(&s) {
                return s;
            }
        }
        unreachable!()
    }

    fn card(rng: &mut impl Rng) -> String {
        let len = [13usize, 15, 16, 16, 16, 19][rng.random_range(0..6)];
        let mut body: Vec<u32> = vec![[3, 4, 5, 6][rng.random_range(0..4)]];
        body.extend((1..len - 1).map(|_| rng.random_range(0..10)));
        let s = with_luhn(&body);
        match rng.random_range(0..3) {
            0 => s,
            sep => {
                let sep = if sep == 1 { ' ' } else { '-' };
                s.chars()
                    .enumerate()
                    .flat_map(|(i, c)| {
                        (i > 0 && i % 4 == 0)
                            .then_some(sep)
                            .into_iter()
                            .chain(Some(c))
                    })
                    .collect()
            }
        }
    }

    fn iban(rng: &mut impl Rng) -> String {
        let countries = [("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)];
        let (cc, bban_len) = countries[rng.random_range(0..countries.len())];
        let bban: String = (0..bban_len)
            .map(|i| {
                if (cc == "GB" || cc == "NL") && i < 4 {
                    (b'A' + rng.random_range(0..26)) as char
                } else {
                    char::from_digit(rng.random_range(0..10), 10).unwrap()
                }
            })
            .collect();
        // Check digits: 98 - (BBAN + CC + "00") mod 97.
        let probe: Vec<char> = format!("{cc}00{bban}").chars().collect();
        let rem = iban_remainder(&probe).unwrap();
        let s = format!("{cc}{:02}{bban}", 98 - rem);
        assert!(iban_ok(&s), "{s}");
        if rng.random_bool(0.5) {
            s.chars()
                .enumerate()
                .flat_map(|(i, c)| {
                    (i > 0 && i % 4 == 0)
                        .then_some(' ')
                        .into_iter()
                        .chain(Some(c))
                })
                .collect()
        } else {
            s
        }
    }

    fn ssn(rng: &mut impl Rng) -> String {
        let area = loop {
            let a = rng.random_range(1..900);
            if a != 666 {
                break a;
            }
        };
        format!(
            "{area:03}-{:02}-{:04}",
            rng.random_range(1..100),
            rng.random_range(1..10000)
        )
    }

    fn recall(d: Detector, make: impl Fn(&mut rand::rngs::ThreadRng) -> String) -> f64 {
        let mut rng = rand::rng();
        let n = 20_000;
        let found = (0..n)
            .filter(|_| {
                let v = make(&mut rng);
                let text = format!("customer note: {v}, thanks");
                d.find(&text).iter().any(|&(s, e)| text[s..e] == v)
            })
            .count();
        found as f64 / n as f64
    }

    #[test]
    fn detectors_find_valid_cards_ibans_and_ssns() {
        for (d, r) in [
            (Detector::Card, recall(Detector::Card, card)),
            (Detector::Iban, recall(Detector::Iban, iban)),
            (Detector::Ssn, recall(Detector::Ssn, ssn)),
        ] {
            eprintln!("{} recall on 20,000 generated values: {r}", d.name());
            assert!(r >= 0.995, "{} recall {r}", d.name());
        }
    }

    #[test]
    fn luhn_and_ssn_checks_agree_with_known_numbers() {
        // Test card numbers the networks publish, with and without separators.
        for good in [
            "4111111111111111",
            "4111-1111-1111-1111",
            "5500 0055 5555 5559",
            "378282246310005",
            "6011111111111117",
            "4222222222222",
        ] {
            assert!(luhn_ok(good), "{good}");
        }
        for bad in [
            "4111111111111112",
            "378282246310006",
            "411111111117",         // passes Luhn, but 12 digits
            "41111111111111111115", // passes Luhn, but 20 digits
        ] {
            assert!(!luhn_ok(bad), "{bad}");
        }
        assert!(ssn_ok("123-45-6789"));
        assert!(!ssn_ok("123-45-67890"));
        assert!(!ssn_ok("123-45-678"));
    }

    #[test]
    fn digit_strings_failing_the_checksums_are_left_alone() {
        let mut rng = rand::rng();
        let mut tried = 0;
        while tried < 20_000 {
            let len = rng.random_range(13..=19);
            let s: String = (0..len)
                .map(|_| char::from_digit(rng.random_range(0..10), 10).unwrap())
                .collect();
            if luhn_ok(&s) {
                continue;
            }
            tried += 1;
            assert!(Detector::Card.find(&s).is_empty(), "{s}");
            let fake_iban = format!("DE{s}");
            if !iban_ok(&fake_iban) {
                assert!(Detector::Iban.find(&fake_iban).is_empty(), "{fake_iban}");
            }
        }
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(Detector::Ssn.find(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn the_other_detectors_find_what_they_should_and_only_that() {
        let cases: [(Detector, &str, bool); 12] = [
            (
                Detector::Email,
                "write to jane.doe+x@example.co.uk today",
                true,
            ),
            (Detector::Email, "user at example dot com", false),
            (Detector::Phone, "call +49 30 1234567 now", true),
            (Detector::Phone, "call (555) 123-4567", true),
            (Detector::Phone, "order 20261128", false),
            (Detector::Secret, "key AKIAIOSFODNN7EXAMPLE here", true),
            (
                Detector::Secret,
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                true,
            ),
            (
                Detector::Secret,
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                true,
            ),
            (Detector::Secret, "-----BEGIN CERTIFICATE-----", false),
            (Detector::Card, "4111 1111 1111 1111", true),
            (Detector::Card, "order 4111111111111112", false),
            (Detector::Iban, "GB82 WEST 1234 5698 7654 32", true),
        ];
        for (d, text, hit) in cases {
            assert_eq!(!d.find(text).is_empty(), hit, "{} on {text:?}", d.name());
        }
    }

    #[test]
    fn range_counts_agree_with_counting_byte_by_byte() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for len in 0..100 {
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            for (lo, hi) in [(b'0', b'9'), (b'A', b'Z'), (0, 0x7f), (b'@', b'@')] {
                let want = text.iter().filter(|b| (lo..=hi).contains(b)).count();
                assert_eq!(count_in_range(&text, lo, hi), want, "{text:?} {lo}..={hi}");
            }
        }
        assert_eq!(
            count_in_range(b"card 4111 1111 1111 1111, \xff9\x80", b'0', b'9'),
            17
        );
    }
}
