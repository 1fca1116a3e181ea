//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), parsed exactly so that limits and
//! job overwrites compare the way the API server would: `500m` < `1`, `1Gi` > `1000Mi`, `1k` = `1000`.

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    #[error("it is empty")]
    Empty,
    #[error("resource quantities cannot be negative")]
    Negative,
    #[error("{0:?} is not a number followed by an optional suffix")]
    Malformed(String),
    #[error(
        "unknown suffix {0:?} (use one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<N>)"
    )]
    Suffix(String),
    #[error("it is too large")]
    TooLarge,
}

/// A non-negative quantity: the text as written (what goes into the pod spec) and its exact value in
/// billionths of a unit (what comparisons use). Values below one billionth round up, as Kubernetes does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    nanos: u128,
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let unsigned = match s.as_bytes()[0] {
            b'-' => return Err(QuantityError::Negative),
            b'+' => &s[1..],
            _ => s,
        };
        let number_len = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(QuantityError::Malformed(s.to_owned()));
        }
        let (exp10, exp2) = suffix_exponents(suffix)?;
        let digits: String = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let mantissa: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::TooLarge)?
        };
        let fraction_digits = i64::try_from(fraction.len()).map_err(|_| QuantityError::TooLarge)?;
        // value = mantissa × 10^(exp10 − fraction digits) × 2^exp2; in nanos the 10-power gains 9.
        let scale10 = exp10 - fraction_digits + 9;
        let mut nanos = mantissa
            .checked_mul(1u128 << exp2)
            .ok_or(QuantityError::TooLarge)?;
        if scale10 >= 0 {
            let factor = u32::try_from(scale10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e))
                .ok_or(QuantityError::TooLarge)?;
            if nanos != 0 {
                nanos = nanos.checked_mul(factor).ok_or(QuantityError::TooLarge)?;
            }
        } else {
            let divisor = u32::try_from(-scale10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            nanos = match divisor {
                Some(d) => nanos.div_ceil(d),
                // Smaller than any representable nano: a non-zero value still rounds up to 1n.
                None => u128::from(nanos != 0),
            };
        }
        Ok(Self {
            text: s.to_owned(),
            nanos,
        })
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The k8s-openapi form for a pod spec.
    pub fn to_kubernetes(&self) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
        k8s_openapi::apimachinery::pkg::api::resource::Quantity(self.text.clone())
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// (power of ten, power of two) a suffix multiplies by.
fn suffix_exponents(suffix: &str) -> Result<(i64, u32), QuantityError> {
    Ok(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix(s.to_owned()));
            }
            let e: i64 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
            if e.abs() > 40 {
                return Err(QuantityError::TooLarge);
            }
            (e, 0)
        }
        s => return Err(QuantityError::Suffix(s.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn compares_across_suffixes() {
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1000Mi"));
        assert!(q("1Gi") < q("1100Mi"));
        assert_eq!(q("1k").cmp(&q("1000")), Ordering::Equal);
        assert_eq!(q("1e3").cmp(&q("1k")), Ordering::Equal);
        assert_eq!(q("1.5").cmp(&q("1500m")), Ordering::Equal);
        assert_eq!(q("0.1").cmp(&q("100m")), Ordering::Equal);
        assert_eq!(q(".5Gi").cmp(&q("512Mi")), Ordering::Equal);
        assert!(q("1G") < q("1Gi"));
        assert!(q("129M") < q("128Mi"));
        assert!(q("135M") > q("128Mi"));
        assert!(q("128974848") == q("128974848"));
        assert_eq!(q("123Mi").cmp(&q("128974848")), Ordering::Equal);
        assert!(q("2Ei") > q("2E"));
        assert!(q("0") < q("1n"));
        assert_eq!(q("0.5n").cmp(&q("1n")), Ordering::Equal, "rounds up");
        assert_eq!(q("1E-3").cmp(&q("1m")), Ordering::Equal);
        assert_eq!(q("+2").cmp(&q("2")), Ordering::Equal);
        assert_eq!(q(" 250m ").as_str(), "250m");
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for (s, want) in [
            ("", QuantityError::Empty),
            ("-1", QuantityError::Negative),
            ("abc", QuantityError::Malformed("abc".into())),
            ("1.2.3", QuantityError::Malformed("1.2.3".into())),
            ("1gb", QuantityError::Suffix("gb".into())),
            ("1mi", QuantityError::Suffix("mi".into())),
            ("1 Gi", QuantityError::Suffix(" Gi".into())),
            ("1e", QuantityError::Suffix("e".into())),
            ("1e99", QuantityError::TooLarge),
            (
                "99999999999999999999999999999999999999999",
                QuantityError::TooLarge,
            ),
        ] {
            assert_eq!(Quantity::parse(s), Err(want), "{s:?}");
        }
    }
}
