//! Resource quantities (`500m`, `1.5Gi`, `2e3`) with exact arithmetic, as upstream's
//! `resource.Quantity`: kept in thousandths so CPU millicores and byte counts both add up
//! exactly, and printed back in the canonical form upstream prints.

use std::fmt;

/// A quantity in thousandths of a unit, and whether it prints with binary suffixes (`Ki`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantity {
    pub millis: i128,
    pub binary: bool,
}

impl Quantity {
    pub fn from_units(units: i64) -> Self {
        Self {
            millis: units as i128 * 1000,
            binary: false,
        }
    }

    /// Parses a quantity; `None` when it is not one. Fractions below a thousandth round up,
    /// as upstream's `MilliValue` does.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(end);
        let (negative, digits) = match number.as_bytes().first()? {
            b'-' => (true, &number[1..]),
            b'+' => (false, &number[1..]),
            _ => (false, number),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // value = mantissa × 10^exponent10 × 1024^exponent1024
        let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        let mut exponent10 = -(fraction.len() as i32);
        let mut binary = false;
        let mut exponent1024 = 0u32;
        match suffix {
            "" => {}
            "n" => exponent10 -= 9,
            "u" => exponent10 -= 6,
            "m" => exponent10 -= 3,
            "k" => exponent10 += 3,
            "M" => exponent10 += 6,
            "G" => exponent10 += 9,
            "T" => exponent10 += 12,
            "P" => exponent10 += 15,
            "E" => exponent10 += 18,
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                binary = true;
                exponent1024 = "KMGTPE".find(&suffix[..1])? as u32 + 1;
            }
            exp if exp.starts_with(['e', 'E']) => exponent10 += exp[1..].parse::<i32>().ok()?,
            _ => return None,
        }
        let mut millis = mantissa.checked_mul(1024i128.checked_pow(exponent1024)?)?;
        let scale = exponent10 + 3;
        if scale >= 0 {
            millis = millis.checked_mul(10i128.checked_pow(scale as u32)?)?;
        } else {
            let divisor = 10i128.checked_pow(scale.unsigned_abs())?;
            millis = (millis + divisor - 1) / divisor;
        }
        Some(Self {
            millis: if negative { -millis } else { millis },
            binary,
        })
    }

    /// A quantity from a JSON value (a string, or a bare number some clients send).
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            _ => None,
        }
    }

    pub fn max(self, other: Self) -> Self {
        if other.millis > self.millis {
            other
        } else {
            self
        }
    }

    /// Whole units, rounded up (upstream's `Value`).
    pub fn value(&self) -> i128 {
        (self.millis + 999).div_euclid(1000)
    }
}

/// The sum, printed like the first quantity unless that one is zero.
impl std::ops::Add for Quantity {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            millis: self.millis + other.millis,
            binary: if self.millis == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self {
            millis: self.millis - other.millis,
            binary: self.binary,
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 != 0 {
            return write!(f, "{}m", self.millis);
        }
        let units = self.millis / 1000;
        if units == 0 {
            return write!(f, "0");
        }
        let (base, suffixes): (i128, [&str; 6]) = if self.binary {
            (1024, ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
        } else {
            (1000, ["k", "M", "G", "T", "P", "E"])
        };
        let (mut value, mut suffix) = (units, "");
        for next in suffixes {
            if value % base != 0 {
                break;
            }
            value /= base;
            suffix = next;
        }
        write!(f, "{value}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn parses_every_suffix_exactly() {
        assert_eq!(q("500m").millis, 500);
        assert_eq!(q("1.5").millis, 1500);
        assert_eq!(q("2Ki").millis, 2048 * 1000);
        assert_eq!(q("1.5Gi").millis, 1_610_612_736_000);
        assert_eq!(q("2e3").millis, 2_000_000);
        assert_eq!(q("1k").millis, 1_000_000);
        assert_eq!(q("1n").millis, 1, "fractions of a thousandth round up");
        assert_eq!(q("-1").millis, -1000);
        for bad in ["", "abc", "1Xi", "1..5", "m"] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn prints_in_canonical_form() {
        assert_eq!(q("500m").to_string(), "500m");
        assert_eq!(q("1000m").to_string(), "1");
        assert_eq!(q("1024Mi").to_string(), "1Gi");
        assert_eq!(q("1500Mi").to_string(), "1500Mi");
        assert_eq!(q("2000").to_string(), "2k");
        assert_eq!(q("0").to_string(), "0");
        assert_eq!((q("128Mi") + q("128Mi")).to_string(), "256Mi");
        assert_eq!((Quantity::default() + q("64Mi")).to_string(), "64Mi");
    }
}
