//! Decimal text handling shared by the text formats: parsing with
//! HALF_UP rounding to a column's scale, and rendering with exact scale.

use crate::error::{EngineError, Result};

/// Parses `text` (`-12.345`, `1e3`) into an unscaled i128 at `scale`,
/// rounding half up as Java's BigDecimal.setScale(HALF_UP) does, and fails
/// if the result needs more than `precision` digits.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128> {
    let err = || {
        EngineError::Serde(format!(
            "Cannot convert '{text}' to DECIMAL({precision}, {scale})"
        ))
    };
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(pos) => (
            &text[..pos],
            text[pos + 1..].parse::<i32>().map_err(|_| err())?,
        ),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err());
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    // value = all_digits * 10^(exponent - frac_len)
    let all_digits: String = format!("{int_part}{frac_part}");
    let shift = exponent - frac_part.len() as i32 + scale as i32;
    let mut value: i128 = 0;
    let mut round_digit = 0u8;
    let keep = all_digits.len() as i32 + shift.min(0);
    for (i, b) in all_digits.bytes().enumerate() {
        let d = b - b'0';
        if (i as i32) < keep {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(d as i128))
                .ok_or_else(err)?;
        } else if i as i32 == keep {
            round_digit = d;
        }
    }
    if shift > 0 {
        for _ in 0..shift {
            value = value.checked_mul(10).ok_or_else(err)?;
        }
    }
    if round_digit >= 5 {
        value += 1;
    }
    if value >= 10i128.pow(precision as u32) {
        return Err(err());
    }
    Ok(if negative { -value } else { value })
}

/// Renders an unscaled decimal with exactly `scale` fraction digits.
pub fn format_decimal(value: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = value.to_string();
        for _ in 0..(-scale) {
            if value != 0 {
                s.push('0');
            }
        }
        return s;
    }
    let scale = scale as usize;
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let digits = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int_part, frac_part) = digits.split_at(digits.len() - scale);
    format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        int_part,
        frac_part
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rounds_half_up() {
        assert_eq!(parse_decimal("12.345", 4, 2).unwrap(), 1235);
        assert_eq!(parse_decimal("-1.5", 3, 0).unwrap(), -2);
        assert_eq!(parse_decimal("1e2", 5, 1).unwrap(), 1000);
        assert_eq!(parse_decimal(".5", 2, 1).unwrap(), 5);
        assert!(parse_decimal("123.4", 3, 1).is_err());
        assert!(parse_decimal("abc", 3, 1).is_err());
    }

    #[test]
    fn formats_with_exact_scale() {
        assert_eq!(format_decimal(1230, 2), "12.30");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(7, 0), "7");
    }
}
