//! Generated secret values: drawn from the operating system's CSPRNG, uniformly over a charset by
//! rejection sampling (no modulo bias), exactly as long as asked. A [`SecretValue`] cannot be
//! printed: it has no `Debug` or `Display`, and its bytes are wiped when dropped.

use rand::TryRngCore;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

use crate::crd::Charset;

/// A generated value. Deliberately not `Debug`, `Display` or `Serialize`: the only way out is
/// [`SecretValue::expose`], called where the value is written into a Secret.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// The value's bytes, for writing into a Secret's data.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (every charset is ASCII, so also in characters).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty (never, for generated values).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The operating system's random source failed; says nothing about any value.
#[derive(thiserror::Error, Debug)]
#[error("the operating system's random number generator failed")]
pub struct RandomSourceError;

/// The characters of a charset, in a fixed order.
pub fn alphabet(charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Alphanumeric => (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .collect(),
        Charset::Base64 => (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .chain([b'+', b'/'])
            .collect(),
        Charset::Hex => (b'0'..=b'9').chain(b'a'..=b'f').collect(),
        Charset::AsciiPrintable => (b'!'..=b'~').collect(),
    }
}

/// Draws `length` characters of `charset` from the operating system's CSPRNG.
pub fn generate(length: usize, charset: Charset) -> Result<SecretValue, RandomSourceError> {
    let mut source =
        |buffer: &mut [u8]| OsRng.try_fill_bytes(buffer).map_err(|_| RandomSourceError);
    generate_from(length, charset, &mut source)
}

/// Draws from `fill` (random bytes) by rejection: a byte is used only below the largest multiple
/// of the alphabet's size, so every character is equally likely.
fn generate_from(
    length: usize,
    charset: Charset,
    fill: &mut dyn FnMut(&mut [u8]) -> Result<(), RandomSourceError>,
) -> Result<SecretValue, RandomSourceError> {
    let alphabet = alphabet(charset);
    let size = alphabet.len();
    let limit = 256 - (256 % size);
    let mut value = Zeroizing::new(Vec::with_capacity(length));
    let mut buffer = Zeroizing::new(vec![0u8; length.max(64)]);
    while value.len() < length {
        fill(&mut buffer)?;
        for &byte in buffer.iter() {
            if value.len() == length {
                break;
            }
            if usize::from(byte) < limit {
                value.push(alphabet[usize::from(byte) % size]);
            }
        }
    }
    Ok(SecretValue(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHARSETS: [Charset; 4] = [
        Charset::Alphanumeric,
        Charset::Base64,
        Charset::Hex,
        Charset::AsciiPrintable,
    ];

    #[test]
    fn alphabets_have_their_documented_sizes() {
        let sizes: Vec<usize> = CHARSETS.iter().map(|c| alphabet(*c).len()).collect();
        assert_eq!(sizes, [62, 64, 16, 94]);
        assert!(!alphabet(Charset::AsciiPrintable).contains(&b' '));
    }

    #[test]
    fn values_have_the_exact_length_and_only_charset_characters() {
        for charset in CHARSETS {
            let allowed = alphabet(charset);
            for length in [16, 17, 255, 4096] {
                let value = generate(length, charset).expect("random");
                assert_eq!(value.len(), length);
                assert!(value.expose().iter().all(|b| allowed.contains(b)));
            }
        }
    }

    #[test]
    fn two_values_differ() {
        let a = generate(32, Charset::Alphanumeric).expect("random");
        let b = generate(32, Charset::Alphanumeric).expect("random");
        assert_ne!(a.expose(), b.expose());
    }

    /// Pearson's chi-square over many characters: for a uniform draw the statistic stays below
    /// the 0.9999 quantile of its distribution (degrees of freedom = alphabet size - 1), which a
    /// modulo-biased draw (some characters 5/4 as likely) exceeds by far at this sample size.
    fn chi_square(counts: &[u64], total: u64) -> f64 {
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// Wilson-Hilferty approximation of the chi-square quantile for z = 3.72 (p = 0.9999).
    fn chi_square_limit(degrees: f64) -> f64 {
        let z = 3.72;
        let term = 1.0 - 2.0 / (9.0 * degrees) + z * (2.0 / (9.0 * degrees)).sqrt();
        degrees * term.powi(3)
    }

    fn counts_of(
        charset: Charset,
        total: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), RandomSourceError>,
    ) -> Vec<u64> {
        let alphabet = alphabet(charset);
        let value = generate_from(total, charset, fill).expect("random");
        let mut counts = vec![0u64; alphabet.len()];
        for byte in value.expose() {
            if let Some(i) = alphabet.iter().position(|a| a == byte) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn every_charset_is_uniform() {
        const TOTAL: usize = 400_000;
        for charset in CHARSETS {
            let mut source = |b: &mut [u8]| OsRng.try_fill_bytes(b).map_err(|_| RandomSourceError);
            let counts = counts_of(charset, TOTAL, &mut source);
            let statistic = chi_square(&counts, TOTAL as u64);
            let limit = chi_square_limit((counts.len() - 1) as f64);
            assert!(
                statistic < limit,
                "{charset:?}: chi-square {statistic:.1} >= {limit:.1}"
            );
        }
    }

    #[test]
    fn the_uniformity_test_catches_modulo_bias() {
        // A biased draw: every byte used, reduced modulo 62.
        const TOTAL: usize = 400_000;
        let alphabet = alphabet(Charset::Alphanumeric);
        let mut bytes = vec![0u8; TOTAL];
        OsRng.try_fill_bytes(&mut bytes).expect("random");
        let mut counts = vec![0u64; alphabet.len()];
        for byte in bytes {
            counts[usize::from(byte) % alphabet.len()] += 1;
        }
        let statistic = chi_square(&counts, TOTAL as u64);
        assert!(
            statistic > chi_square_limit(61.0),
            "bias not detected: {statistic:.1}"
        );
    }

    #[test]
    fn rejection_skips_bytes_above_the_last_full_multiple() {
        // 62 characters: bytes 248..=255 are rejected; 0 maps to 'A', 61 to '9', 62 to 'A'.
        let mut script = vec![255u8, 248, 0, 61, 62];
        script.resize(64, 255);
        let mut calls = 0;
        let mut fill = |buffer: &mut [u8]| {
            calls += 1;
            if calls == 1 {
                buffer.copy_from_slice(&script);
            } else {
                buffer.fill(1);
            }
            Ok(())
        };
        let value = generate_from(4, Charset::Alphanumeric, &mut fill).expect("value");
        assert_eq!(value.expose(), b"A9AB");
    }

    #[test]
    fn a_failing_source_is_an_error_not_a_short_value() {
        let mut fill = |_: &mut [u8]| Err(RandomSourceError);
        assert!(generate_from(16, Charset::Hex, &mut fill).is_err());
        assert!(!RandomSourceError.to_string().is_empty());
    }
}
