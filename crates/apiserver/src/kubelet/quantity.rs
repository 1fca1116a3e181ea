//! Resource quantities (`500m`, `128Mi`, `1G`, `2`) as the scheduler and the memory limit need
//! them: CPU in millicores, everything else in whole units (bytes for memory).

/// A quantity in thousandths of its unit (CPU: millicores; memory: milli-bytes), or `None` when
/// the text is not a Kubernetes quantity.
pub fn parse_milli(text: &str) -> Option<i128> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let negative = int_part.starts_with('-');
    let int_part = int_part.trim_start_matches(['+', '-']);
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = (int.frac) * 1000 * multiplier, exact for the suffixes Kubernetes allows.
    let (mul_num, mul_den): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().ok()?;
            (10i128.checked_pow(exp)?, 1)
        }
        _ => return None,
    };
    let frac_digits = u32::try_from(frac_part.len()).ok()?;
    let scale = 10i128.checked_pow(frac_digits)?;
    let int: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().ok()?
    };
    let frac: i128 = if frac_part.is_empty() {
        0
    } else {
        frac_part.parse().ok()?
    };
    let whole = int.checked_mul(scale)?.checked_add(frac)?;
    let milli = whole
        .checked_mul(1000)?
        .checked_mul(mul_num)?
        .checked_div(mul_den.checked_mul(scale)?)?;
    Some(if negative { -milli } else { milli })
}

/// CPU in millicores, rounded up as the scheduler does.
pub fn cpu_millis(text: &str) -> Option<i64> {
    parse_milli(text).and_then(|m| i64::try_from(m).ok())
}

/// Bytes (or any whole unit), rounded up.
pub fn whole_units(text: &str) -> Option<i64> {
    let m = parse_milli(text)?;
    let whole = if m % 1000 == 0 {
        m / 1000
    } else {
        m / 1000 + 1
    };
    i64::try_from(whole).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_memory_quantities() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(whole_units("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(whole_units("1G"), Some(1_000_000_000));
        assert_eq!(whole_units("1.5Gi"), Some(1_610_612_736));
        assert_eq!(whole_units("1e3"), Some(1000));
        assert_eq!(whole_units("64974Ki"), Some(64974 * 1024));
        assert_eq!(whole_units("lots"), None);
        assert_eq!(whole_units("12Zi"), None);
    }
}
