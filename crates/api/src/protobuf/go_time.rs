//! Times and durations as upstream's JSON writes them: `metav1.Time` is RFC 3339 in whole
//! seconds, `metav1.MicroTime` in microseconds, `metav1.Duration` is Go's duration text.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// `2026-01-02T03:04:05Z`, or `.123456` before the `Z` when `micros` is given.
pub(super) fn format_time(seconds: i64, micros: Option<u32>) -> Result<String, String> {
    let t = OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| format!("time {seconds}s since 1970 is outside years 0 to 9999"))?;
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if let Some(micros) = micros {
        let _ = write!(text, ".{micros:06}");
    }
    text.push('Z');
    Ok(text)
}

/// Seconds since 1970 and nanoseconds of an RFC 3339 time.
pub(super) fn parse_time(text: &str) -> Result<(i64, u32), String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    Ok((t.unix_timestamp(), t.nanosecond()))
}

/// Go's `time.Duration.String`: `1h0m0s`, `1m30s`, `1.5s`, `100ms`, `1.5µs`, `0s`.
pub(super) fn format_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    if nanos < 0 {
        text.push('-');
    }
    let n = nanos.unsigned_abs();
    if n < NANOS_PER_SECOND {
        let (unit, name) = match n {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        push_decimal(&mut text, n, unit);
        text.push_str(name);
        return text;
    }
    let hours = n / (3600 * NANOS_PER_SECOND);
    let minutes = n / (60 * NANOS_PER_SECOND) % 60;
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    push_decimal(&mut text, n % (60 * NANOS_PER_SECOND), NANOS_PER_SECOND);
    text.push('s');
    text
}

/// `value / unit` with the fraction's trailing zeros dropped; `unit` is a power of ten.
fn push_decimal(text: &mut String, value: u64, unit: u64) {
    let _ = write!(text, "{}", value / unit);
    let fraction = value % unit;
    if fraction != 0 {
        let width = unit.ilog10() as usize;
        let digits = format!("{fraction:0width$}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`ns`, `us`/`µs`, `ms`,
/// `s`, `m`, `h`), optionally signed, e.g. `1h30m`, `-1.5s`; `0` alone needs no unit.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration such as \"1h30m\" or \"500ms\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(len)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        total = total.saturating_add(whole.saturating_mul(unit));
        // Digits past nanosecond precision cannot change the result.
        let mut scale = unit;
        for digit in fraction.bytes() {
            scale /= 10;
            total += u128::from(digit - b'0') * scale;
        }
        rest = after;
    }
    let limit = if negative {
        1u128 << 63
    } else {
        (1u128 << 63) - 1
    };
    if total > limit {
        return Err(format!("duration {text:?} overflows 64-bit nanoseconds"));
    }
    // In range by the check above, including -2^63.
    Ok(if negative {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::{format_duration, format_time, parse_duration, parse_time};

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-5_000_000_000, "-5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(format_duration(nanos), text);
        }
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        let cases = [
            ("0", 0),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-1.5s", -1_500_000_000),
            ("100ms", 100_000_000),
            ("2us", 2_000),
            ("2µs", 2_000),
            ("1h0m0s", 3_600_000_000_000),
            (".5s", 500_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_duration(text), Ok(nanos), "{text}");
        }
        for bad in ["", "1", "h", "1x", "1.s5", "-", "9999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_print_in_whole_seconds_or_microseconds() {
        assert_eq!(
            format_time(1_767_323_045, None).unwrap(),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            format_time(1_767_323_045, Some(7)).unwrap(),
            "2026-01-02T03:04:05.000007Z"
        );
        assert_eq!(format_time(0, None).unwrap(), "1970-01-01T00:00:00Z");
        assert!(format_time(i64::MAX, None).is_err());
        assert_eq!(
            parse_time("2026-01-02T04:04:05.5+01:00"),
            Ok((1_767_323_045, 500_000_000))
        );
    }
}
