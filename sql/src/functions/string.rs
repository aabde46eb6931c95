//! ksqlDB's string and bytes functions that DataFusion's built-ins do not
//! match: 1-based positions, Java's null rules, Java regular expressions
//! (the common subset), and the `ENCODE`/`TO_BYTES` encodings (`hex`,
//! `utf8`, `ascii`, `base64`).
//!
//! `LPAD`/`RPAD` take strings (counted in characters) or bytes; a negative
//! length or an empty padding gives null instead of failing, and a length
//! over [`MAX_PAD_LEN`] fails the call (null, logged) rather than
//! allocating whatever a query asks for.

use std::cell::RefCell;
use std::sync::Arc;

use datafusion::arrow::array::{MapBuilder, MapFieldNames, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{HashMap, Result, ScalarValue, exec_err};
use regex::Regex;

use super::rowwise::{Arg, RowKind, bytes, expect, int, string, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrFn {
    Lpad,
    Rpad,
    Chr,
    Instr,
    Initcap,
    Elt,
    Field,
    Encode,
    SplitToMap,
    RegexpExtract,
    RegexpExtractAll,
    RegexpReplace,
    ToBytes,
    FromBytes,
    Substring,
    Trim,
    Ltrim,
    Rtrim,
    Split,
    RegexpSplitToArray,
    Mask,
    MaskKeepLeft,
    MaskKeepRight,
    MaskLeft,
    MaskRight,
    IntFromBytes,
    BigintFromBytes,
    DoubleFromBytes,
}

impl StrFn {
    pub const ALL: [StrFn; 28] = [
        StrFn::Split,
        StrFn::RegexpSplitToArray,
        StrFn::Mask,
        StrFn::MaskKeepLeft,
        StrFn::MaskKeepRight,
        StrFn::MaskLeft,
        StrFn::MaskRight,
        StrFn::IntFromBytes,
        StrFn::BigintFromBytes,
        StrFn::DoubleFromBytes,
        StrFn::Substring,
        StrFn::Trim,
        StrFn::Ltrim,
        StrFn::Rtrim,
        StrFn::Lpad,
        StrFn::Rpad,
        StrFn::Chr,
        StrFn::Instr,
        StrFn::Initcap,
        StrFn::Elt,
        StrFn::Field,
        StrFn::Encode,
        StrFn::SplitToMap,
        StrFn::RegexpExtract,
        StrFn::RegexpExtractAll,
        StrFn::RegexpReplace,
        StrFn::ToBytes,
        StrFn::FromBytes,
    ];
}

fn string_map_type() -> DataType {
    sluice_engine::schema::SqlType::Map(
        Box::new(sluice_engine::schema::SqlType::String),
        Box::new(sluice_engine::schema::SqlType::String),
    )
    .to_arrow()
}

impl RowKind for StrFn {
    fn name(&self) -> &'static str {
        match self {
            StrFn::Lpad => "lpad",
            StrFn::Rpad => "rpad",
            StrFn::Chr => "chr",
            StrFn::Instr => "instr",
            StrFn::Initcap => "initcap",
            StrFn::Elt => "elt",
            StrFn::Field => "field",
            StrFn::Encode => "encode",
            StrFn::SplitToMap => "split_to_map",
            StrFn::RegexpExtract => "regexp_extract",
            StrFn::RegexpExtractAll => "regexp_extract_all",
            StrFn::RegexpReplace => "regexp_replace",
            StrFn::ToBytes => "to_bytes",
            StrFn::FromBytes => "from_bytes",
            StrFn::Substring => "substring",
            StrFn::Trim => "trim",
            StrFn::Ltrim => "ltrim",
            StrFn::Rtrim => "rtrim",
            StrFn::Split => "split",
            StrFn::RegexpSplitToArray => "regexp_split_to_array",
            StrFn::Mask => "mask",
            StrFn::MaskKeepLeft => "mask_keep_left",
            StrFn::MaskKeepRight => "mask_keep_right",
            StrFn::MaskLeft => "mask_left",
            StrFn::MaskRight => "mask_right",
            StrFn::IntFromBytes => "int_from_bytes",
            StrFn::BigintFromBytes => "bigint_from_bytes",
            StrFn::DoubleFromBytes => "double_from_bytes",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use Arg::*;
        let name = self.name();
        match self {
            StrFn::Lpad | StrFn::Rpad => {
                expect(name, args, &[&[Str, Int32, Str], &[Bytes, Int32, Bytes]])
            }
            StrFn::Chr => expect(name, args, &[&[Int32], &[Str]]),
            StrFn::Instr => expect(
                name,
                args,
                &[&[Str, Str], &[Str, Str, Int32], &[Str, Str, Int32, Int32]],
            ),
            StrFn::Initcap => expect(name, args, &[&[Str]]),
            StrFn::Elt | StrFn::Field => {
                let head = if *self == StrFn::Elt { Int32 } else { Str };
                let mut shape = vec![head];
                shape.extend(std::iter::repeat_n(
                    Str,
                    args.len().saturating_sub(1).max(1),
                ));
                expect(name, args, &[&shape])
            }
            StrFn::Encode => expect(name, args, &[&[Str, Str, Str]]),
            StrFn::SplitToMap => expect(name, args, &[&[Str, Str, Str]]),
            StrFn::RegexpExtract | StrFn::RegexpExtractAll => {
                expect(name, args, &[&[Str, Str], &[Str, Str, Int32]])
            }
            StrFn::RegexpReplace => expect(name, args, &[&[Str, Str, Str]]),
            StrFn::ToBytes => expect(name, args, &[&[Str, Str]]),
            StrFn::FromBytes => expect(name, args, &[&[Bytes, Str]]),
            StrFn::Substring => expect(
                name,
                args,
                &[
                    &[Str, Int32],
                    &[Str, Int32, Int32],
                    &[Bytes, Int32],
                    &[Bytes, Int32, Int32],
                ],
            ),
            StrFn::Trim | StrFn::Ltrim | StrFn::Rtrim => expect(name, args, &[&[Str]]),
            StrFn::Split => expect(name, args, &[&[Str, Str], &[Bytes, Bytes]]),
            StrFn::RegexpSplitToArray => expect(name, args, &[&[Str, Str]]),
            StrFn::Mask => expect(name, args, &[&[Str], &[Str, Str, Str, Str, Str]]),
            StrFn::MaskKeepLeft | StrFn::MaskKeepRight | StrFn::MaskLeft | StrFn::MaskRight => {
                expect(
                    name,
                    args,
                    &[&[Str, Int32], &[Str, Int32, Str, Str, Str, Str]],
                )
            }
            StrFn::IntFromBytes | StrFn::BigintFromBytes | StrFn::DoubleFromBytes => {
                expect(name, args, &[&[Bytes], &[Bytes, Str]])
            }
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(match self {
            StrFn::Lpad | StrFn::Rpad | StrFn::Substring => {
                args.first().cloned().unwrap_or(DataType::Utf8)
            }
            StrFn::Instr | StrFn::Field => DataType::Int32,
            StrFn::SplitToMap => string_map_type(),
            StrFn::RegexpExtractAll | StrFn::RegexpSplitToArray => {
                DataType::new_list(DataType::Utf8, true)
            }
            StrFn::Split => {
                DataType::new_list(args.first().cloned().unwrap_or(DataType::Utf8), true)
            }
            StrFn::IntFromBytes => DataType::Int32,
            StrFn::BigintFromBytes => DataType::Int64,
            StrFn::DoubleFromBytes => DataType::Float64,
            StrFn::ToBytes => DataType::Binary,
            _ => DataType::Utf8,
        })
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let s = |i: usize| args.get(i).and_then(text);
        let n = |i: usize| args.get(i).and_then(int);
        Ok(match self {
            StrFn::Lpad | StrFn::Rpad => {
                let left = *self == StrFn::Lpad;
                let Some(len) = n(1).and_then(|l| usize::try_from(l).ok()) else {
                    return Ok(ScalarValue::Null);
                };
                if len > MAX_PAD_LEN {
                    return exec_err!(
                        "{} length {len} is over the limit of {MAX_PAD_LEN}",
                        self.name().to_uppercase()
                    );
                }
                match (args.first(), args.get(2)) {
                    (Some(ScalarValue::Binary(_)), Some(p)) => {
                        let (Some(input), Some(pad)) = (args.first().and_then(bytes), bytes(p))
                        else {
                            return Ok(ScalarValue::Null);
                        };
                        match pad_items(input, pad, len, left) {
                            Some(out) => ScalarValue::Binary(Some(out)),
                            None => ScalarValue::Null,
                        }
                    }
                    _ => {
                        let (Some(input), Some(pad)) = (s(0), s(2)) else {
                            return Ok(ScalarValue::Null);
                        };
                        let input: Vec<char> = input.chars().collect();
                        let pad: Vec<char> = pad.chars().collect();
                        match pad_items(&input, &pad, len, left) {
                            Some(out) => string(out.into_iter().collect::<String>()),
                            None => ScalarValue::Null,
                        }
                    }
                }
            }
            StrFn::Chr => match args.first() {
                Some(v @ ScalarValue::Utf8(_)) => match text(v).and_then(unescape_utf16) {
                    Some(c) => string(c),
                    None => ScalarValue::Null,
                },
                Some(v) => match int(v)
                    .and_then(|c| u32::try_from(c).ok())
                    .and_then(char::from_u32)
                {
                    Some(c) => string(c.to_string()),
                    None => ScalarValue::Null,
                },
                None => ScalarValue::Null,
            },
            StrFn::Instr => {
                let (Some(haystack), Some(needle)) = (s(0), s(1)) else {
                    return Ok(ScalarValue::Null);
                };
                let position = if args.len() > 2 { n(2) } else { Some(1) };
                let occurrence = if args.len() > 3 { n(3) } else { Some(1) };
                let (Some(position), Some(occurrence)) = (position, occurrence) else {
                    return Ok(ScalarValue::Null);
                };
                ScalarValue::Int32(Some(instr(haystack, needle, position, occurrence)))
            }
            StrFn::Initcap => match s(0) {
                Some(t) => string(initcap(t)),
                None => ScalarValue::Null,
            },
            StrFn::Elt => {
                let picked = n(0)
                    .filter(|i| *i >= 1)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| args.get(i))
                    .and_then(text);
                match picked {
                    Some(t) => string(t),
                    None => ScalarValue::Null,
                }
            }
            StrFn::Field => {
                let position = s(0).and_then(|wanted| {
                    args.get(1..)
                        .unwrap_or_default()
                        .iter()
                        .position(|a| text(a) == Some(wanted))
                        .map(|p| p as i32 + 1)
                });
                ScalarValue::Int32(Some(position.unwrap_or(0)))
            }
            StrFn::Encode => {
                let (Some(input), Some(from), Some(to)) = (s(0), s(1), s(2)) else {
                    return Ok(ScalarValue::Null);
                };
                match decode_text(input, from).and_then(|b| encode_bytes(&b, to)) {
                    Some(out) => string(out),
                    None => ScalarValue::Null,
                }
            }
            StrFn::ToBytes => {
                let (Some(input), Some(encoding)) = (s(0), s(1)) else {
                    return Ok(ScalarValue::Null);
                };
                match decode_text(input, encoding) {
                    Some(b) => ScalarValue::Binary(Some(b)),
                    None => {
                        return exec_err!("TO_BYTES: '{input}' is not valid {encoding}");
                    }
                }
            }
            StrFn::FromBytes => {
                let (Some(input), Some(encoding)) = (args.first().and_then(bytes), s(1)) else {
                    return Ok(ScalarValue::Null);
                };
                match encode_bytes(input, encoding) {
                    Some(out) => string(out),
                    None => return exec_err!("FROM_BYTES: unknown encoding '{encoding}'"),
                }
            }
            StrFn::SplitToMap => {
                let (Some(input), Some(entry), Some(kv)) = (s(0), s(1), s(2)) else {
                    return Ok(ScalarValue::Null);
                };
                if entry.is_empty() || kv.is_empty() {
                    return Ok(ScalarValue::Null);
                }
                split_to_map(input, entry, kv)?
            }
            StrFn::RegexpExtract | StrFn::RegexpExtractAll => {
                let (Some(pattern), Some(input)) = (s(0), s(1)) else {
                    return Ok(ScalarValue::Null);
                };
                let group = if args.len() > 2 { n(2) } else { Some(0) };
                let Some(group) = group.and_then(|g| usize::try_from(g).ok()) else {
                    return Ok(ScalarValue::Null);
                };
                with_regex(pattern, |re| {
                    if *self == StrFn::RegexpExtract {
                        match re
                            .captures(input)
                            .and_then(|c| c.get(group).map(|m| m.as_str().to_string()))
                        {
                            Some(m) => string(m),
                            None => ScalarValue::Null,
                        }
                    } else {
                        let found: Vec<ScalarValue> = re
                            .captures_iter(input)
                            .map(|c| {
                                ScalarValue::Utf8(c.get(group).map(|m| m.as_str().to_string()))
                            })
                            .collect();
                        ScalarValue::List(ScalarValue::new_list_nullable(&found, &DataType::Utf8))
                    }
                })?
            }
            StrFn::Substring => {
                let (Some(value), Some(pos)) = (args.first(), n(1)) else {
                    return Ok(ScalarValue::Null);
                };
                let length = match args.get(2) {
                    Some(l) => match int(l) {
                        Some(l) => Some(l),
                        None => return Ok(ScalarValue::Null),
                    },
                    None => None,
                };
                match value {
                    ScalarValue::Binary(Some(b)) => {
                        let (from, to) = substring_range(b.len(), pos, length);
                        ScalarValue::Binary(Some(b[from..to].to_vec()))
                    }
                    v => match text(v) {
                        Some(t) => {
                            let chars: Vec<char> = t.chars().collect();
                            let (from, to) = substring_range(chars.len(), pos, length);
                            string(chars[from..to].iter().collect::<String>())
                        }
                        None => ScalarValue::Null,
                    },
                }
            }
            StrFn::Trim | StrFn::Ltrim | StrFn::Rtrim => match s(0) {
                // Java's String.trim: every character up to U+0020.
                Some(t) => {
                    let blank = |c: char| c <= ' ';
                    string(match self {
                        StrFn::Trim => t.trim_matches(blank),
                        StrFn::Ltrim => t.trim_start_matches(blank),
                        _ => t.trim_end_matches(blank),
                    })
                }
                None => ScalarValue::Null,
            },
            StrFn::Split => match (args.first(), args.get(1)) {
                (Some(ScalarValue::Binary(Some(b))), Some(ScalarValue::Binary(Some(d)))) => {
                    let parts: Vec<ScalarValue> = split_bytes(b, d)
                        .into_iter()
                        .map(|p| ScalarValue::Binary(Some(p)))
                        .collect();
                    ScalarValue::List(ScalarValue::new_list_nullable(&parts, &DataType::Binary))
                }
                _ => match (s(0), s(1)) {
                    (Some(input), Some(delimiter)) => {
                        let parts: Vec<ScalarValue> = split_text(input, delimiter)
                            .into_iter()
                            .map(|p| ScalarValue::Utf8(Some(p)))
                            .collect();
                        ScalarValue::List(ScalarValue::new_list_nullable(&parts, &DataType::Utf8))
                    }
                    _ => ScalarValue::Null,
                },
            },
            StrFn::RegexpSplitToArray => {
                let (Some(input), Some(pattern)) = (s(0), s(1)) else {
                    return Ok(ScalarValue::Null);
                };
                let parts: Vec<String> = if pattern.is_empty() {
                    input.chars().map(String::from).collect()
                } else {
                    with_regex(pattern, |re| re.split(input).map(String::from).collect())?
                };
                let parts: Vec<ScalarValue> = parts
                    .into_iter()
                    .map(|p| ScalarValue::Utf8(Some(p)))
                    .collect();
                ScalarValue::List(ScalarValue::new_list_nullable(&parts, &DataType::Utf8))
            }
            StrFn::Mask
            | StrFn::MaskKeepLeft
            | StrFn::MaskKeepRight
            | StrFn::MaskLeft
            | StrFn::MaskRight => {
                let Some(input) = s(0) else {
                    return Ok(ScalarValue::Null);
                };
                let (count, first_mask) = if *self == StrFn::Mask {
                    (0, 1)
                } else {
                    match n(1) {
                        Some(c) if c >= 0 => (c as usize, 2),
                        Some(c) => {
                            return exec_err!(
                                "function {} requires a non-negative number of characters, got {c}",
                                self.name()
                            );
                        }
                        None => return Ok(ScalarValue::Null),
                    }
                };
                let masks = Masks::from_args(args, first_mask);
                let chars: Vec<char> = input.chars().collect();
                let len = chars.len();
                let masked = |i: usize| match self {
                    StrFn::Mask => true,
                    StrFn::MaskKeepLeft => i >= count,
                    StrFn::MaskKeepRight => i + count < len,
                    StrFn::MaskLeft => i < count,
                    _ => i + count >= len,
                };
                string(
                    chars
                        .iter()
                        .enumerate()
                        .map(|(i, c)| if masked(i) { masks.apply(*c) } else { *c })
                        .collect::<String>(),
                )
            }
            StrFn::IntFromBytes | StrFn::BigintFromBytes | StrFn::DoubleFromBytes => {
                let Some(raw) = args.first().and_then(bytes) else {
                    return Ok(ScalarValue::Null);
                };
                let little = match args.get(1) {
                    None => false,
                    Some(order) => match text(order).map(str::to_uppercase).as_deref() {
                        Some("BIG_ENDIAN") => false,
                        Some("LITTLE_ENDIAN") => true,
                        _ => {
                            return exec_err!("byte order must be BIG_ENDIAN or LITTLE_ENDIAN");
                        }
                    },
                };
                let width = if *self == StrFn::IntFromBytes { 4 } else { 8 };
                if raw.len() != width {
                    return exec_err!(
                        "{} takes {width} bytes, got {}",
                        self.name().to_uppercase(),
                        raw.len()
                    );
                }
                let mut buf = [0u8; 8];
                buf[..width].copy_from_slice(raw);
                match (self, little) {
                    (StrFn::IntFromBytes, false) => ScalarValue::Int32(Some(i32::from_be_bytes([
                        buf[0], buf[1], buf[2], buf[3],
                    ]))),
                    (StrFn::IntFromBytes, true) => ScalarValue::Int32(Some(i32::from_le_bytes([
                        buf[0], buf[1], buf[2], buf[3],
                    ]))),
                    (StrFn::BigintFromBytes, false) => {
                        ScalarValue::Int64(Some(i64::from_be_bytes(buf)))
                    }
                    (StrFn::BigintFromBytes, true) => {
                        ScalarValue::Int64(Some(i64::from_le_bytes(buf)))
                    }
                    (_, false) => ScalarValue::Float64(Some(f64::from_be_bytes(buf))),
                    (_, true) => ScalarValue::Float64(Some(f64::from_le_bytes(buf))),
                }
            }
            StrFn::RegexpReplace => {
                let (Some(input), Some(pattern), Some(replacement)) = (s(0), s(1), s(2)) else {
                    return Ok(ScalarValue::Null);
                };
                with_regex(pattern, |re| {
                    string(re.replace_all(input, java_replacement(replacement).as_str()))
                })?
            }
        })
    }
}

/// Rewrites a LIKE pattern escaped with `escape` into backslash escapes,
/// the only escape DataFusion's LIKE knows.
pub fn rewrite_escape(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// A computed LIKE pattern with its own escape character, rewritten per
/// row by [`rewrite_escape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EscapedPattern(pub char);

impl RowKind for EscapedPattern {
    fn name(&self) -> &'static str {
        "like_pattern"
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        expect(self.name(), args, &[&[Arg::Str]])
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        Ok(match args.first().and_then(text) {
            Some(p) => string(rewrite_escape(p, self.0)),
            None => ScalarValue::Null,
        })
    }
}

/// ksqlDB's `SPLIT` of text: an empty delimiter splits every character;
/// empty parts (leading, trailing, between adjacent delimiters) are kept.
fn split_text(input: &str, delimiter: &str) -> Vec<String> {
    if delimiter.is_empty() {
        return input.chars().map(String::from).collect();
    }
    input.split(delimiter).map(String::from).collect()
}

/// `SPLIT` of bytes, by the same rules.
fn split_bytes(input: &[u8], delimiter: &[u8]) -> Vec<Vec<u8>> {
    if delimiter.is_empty() {
        return input.iter().map(|b| vec![*b]).collect();
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= input.len() {
        if &input[i..i + delimiter.len()] == delimiter {
            parts.push(input[start..i].to_vec());
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(input[start..].to_vec());
    parts
}

/// The replacement characters of the `MASK` functions: for upper-case,
/// lower-case, digit and other characters; `None` keeps that class.
struct Masks([Option<char>; 4]);

impl Masks {
    /// From the optional arguments starting at `from` (defaults `X`, `x`,
    /// `n`, `-`; a given null keeps the class unmasked).
    fn from_args(args: &[ScalarValue], from: usize) -> Masks {
        let defaults = ['X', 'x', 'n', '-'];
        let mut masks = [None; 4];
        for (i, default) in defaults.iter().enumerate() {
            masks[i] = match args.get(from + i) {
                None => Some(*default),
                Some(v) => text(v).and_then(|t| t.chars().next()),
            };
        }
        Masks(masks)
    }

    fn apply(&self, c: char) -> char {
        let class = if c.is_uppercase() {
            0
        } else if c.is_lowercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            3
        };
        self.0[class].unwrap_or(c)
    }
}

/// Longest result of `LPAD`/`RPAD`, in characters or bytes: one call
/// asking for gigabytes would otherwise exhaust the server's memory (a
/// pull query evaluates it for every row of a batch).
pub const MAX_PAD_LEN: usize = 1_000_000;

/// Pads `input` to `len` items with repeats of `pad`, or cuts it to `len`;
/// `None` when there is nothing to pad with.
fn pad_items<T: Clone>(input: &[T], pad: &[T], len: usize, left: bool) -> Option<Vec<T>> {
    if pad.is_empty() {
        return None;
    }
    if input.len() >= len {
        return Some(input[..len].to_vec());
    }
    let filler: Vec<T> = pad
        .iter()
        .cycle()
        .take(len - input.len())
        .cloned()
        .collect();
    Some(if left {
        [filler.as_slice(), input].concat()
    } else {
        [input, filler.as_slice()].concat()
    })
}

/// The `[from, to)` range of ksqlDB's 1-based `SUBSTRING(pos, length)`
/// over `len` items: a negative position counts from the end, 0 is the
/// start, and the range is clipped to the value.
fn substring_range(len: usize, pos: i64, length: Option<i64>) -> (usize, usize) {
    let len_i = len as i64;
    let from = if pos < 0 {
        (len_i + pos).max(0)
    } else {
        (pos - 1).min(len_i).max(0)
    };
    let to = match length {
        Some(l) => from.saturating_add(l).min(len_i).max(from),
        None => len_i,
    };
    (from as usize, to as usize)
}

/// `\uXXXX` escapes (UTF-16 code units) as the text they stand for.
fn unescape_utf16(s: &str) -> Option<String> {
    let mut units = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let hex = rest.strip_prefix("\\u")?;
        let unit = u16::from_str_radix(hex.get(..4)?, 16).ok()?;
        units.push(unit);
        rest = &hex[4..];
    }
    if units.is_empty() {
        return None;
    }
    String::from_utf16(&units).ok()
}

/// 1-based position of the `occurrence`th `needle` searching from
/// `position` (from the end when negative); 0 when absent.
fn instr(haystack: &str, needle: &str, position: i64, occurrence: i64) -> i32 {
    let chars: Vec<char> = haystack.chars().collect();
    let pattern: Vec<char> = needle.chars().collect();
    let len = chars.len() as i64;
    if occurrence < 1 || position == 0 || pattern.len() as i64 > len {
        return 0;
    }
    let matches_at = |i: i64| {
        i >= 0
            && i + pattern.len() as i64 <= len
            && chars[i as usize..i as usize + pattern.len()] == pattern[..]
    };
    let mut remaining = occurrence;
    if position > 0 {
        let mut i = position - 1;
        while i + pattern.len() as i64 <= len {
            if matches_at(i) {
                remaining -= 1;
                if remaining == 0 {
                    return (i + 1) as i32;
                }
            }
            i += 1;
        }
    } else {
        let mut i = len + position;
        while i >= 0 {
            if matches_at(i) {
                remaining -= 1;
                if remaining == 0 {
                    return (i + 1) as i32;
                }
            }
            i -= 1;
        }
    }
    0
}

/// Each whitespace-separated word with its first letter upper-cased and
/// the rest lower-cased; whitespace is kept as it is.
fn initcap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_word_start = true;
    for c in s.chars() {
        if c.is_whitespace() {
            at_word_start = true;
            out.push(c);
        } else if at_word_start {
            out.extend(c.to_uppercase());
            at_word_start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Text in `encoding` as the bytes it stands for.
fn decode_text(input: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_lowercase().as_str() {
        "hex" => decode_hex(input),
        "utf8" => Some(input.as_bytes().to_vec()),
        "ascii" => Some(
            input
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
        ),
        "base64" => decode_base64(input),
        _ => None,
    }
}

/// Bytes rendered as text in `encoding`.
fn encode_bytes(input: &[u8], encoding: &str) -> Option<String> {
    Some(match encoding.to_lowercase().as_str() {
        "hex" => input.iter().map(|b| format!("{b:02x}")).collect(),
        "utf8" => String::from_utf8_lossy(input).into_owned(),
        "ascii" => input
            .iter()
            .map(|b| {
                if b.is_ascii() {
                    *b as char
                } else {
                    char::REPLACEMENT_CHARACTER
                }
            })
            .collect(),
        "base64" => encode_base64(input),
        _ => return None,
    })
}

/// Hex digits, optionally written `0x...` (an odd count then gets a
/// leading zero) or `X'...'`.
fn decode_hex(input: &str) -> Option<Vec<u8>> {
    let digits: String = if let Some(rest) = input.strip_prefix("0x") {
        if rest.len() % 2 == 1 {
            format!("0{rest}")
        } else {
            rest.to_string()
        }
    } else if let Some(rest) = input
        .strip_prefix("X'")
        .or_else(|| input.strip_prefix("x'"))
    {
        rest.strip_suffix('\'')?.to_string()
    } else {
        input.to_string()
    };
    if digits.len() % 2 == 1 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode_base64(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn decode_base64(input: &str) -> Option<Vec<u8>> {
    let trimmed = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in trimmed.bytes() {
        let v = BASE64.iter().position(|b| *b == c)? as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn split_to_map(input: &str, entry: &str, kv: &str) -> Result<ScalarValue> {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "key".into(),
        value: "value".into(),
    };
    let mut builder = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for part in input.split(entry).filter(|p| !p.is_empty()) {
        let mut pieces = part.split(kv);
        if let (Some(k), Some(v)) = (pieces.next(), pieces.next()) {
            // A later entry replaces an earlier one with the same key.
            match seen.iter_mut().find(|(key, _)| *key == k) {
                Some(existing) => existing.1 = v,
                None => seen.push((k, v)),
            }
        }
    }
    for (k, v) in seen {
        builder.keys().append_value(k);
        builder.values().append_value(v);
    }
    builder.append(true)?;
    Ok(ScalarValue::Map(Arc::new(builder.finish())))
}

/// Java's replacement syntax (`$1`, `\$`) in the regex crate's (`${1}`,
/// `$$`).
fn java_replacement(replacement: &str) -> String {
    let mut out = String::with_capacity(replacement.len());
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut group = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    group.push(*d);
                    chars.next();
                }
                if group.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{group}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

thread_local! {
    /// Compiled patterns by their text: most calls pass a literal.
    static PATTERNS: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

fn with_regex<T>(pattern: &str, f: impl FnOnce(&Regex) -> T) -> Result<T> {
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            let compiled = match Regex::new(pattern) {
                Ok(re) => re,
                Err(e) => return exec_err!("invalid regular expression '{pattern}': {e}"),
            };
            if cache.len() > 256 {
                cache.clear();
            }
            cache.insert(pattern.to_string(), compiled);
        }
        match cache.get(pattern) {
            Some(re) => Ok(f(re)),
            None => exec_err!("regular expression cache lost '{pattern}'"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_beyond_the_limit_fails_instead_of_allocating() {
        let call = |f: StrFn, len: i64| {
            f.call(
                &[
                    ScalarValue::Utf8(Some("a".into())),
                    ScalarValue::Int64(Some(len)),
                    ScalarValue::Utf8(Some("x".into())),
                ],
                &DataType::Utf8,
            )
        };
        for f in [StrFn::Lpad, StrFn::Rpad] {
            assert!(call(f, 2_147_483_647).is_err());
            let ScalarValue::Utf8(Some(at_limit)) = call(f, MAX_PAD_LEN as i64).unwrap() else {
                panic!("a string at the limit");
            };
            assert_eq!(at_limit.len(), MAX_PAD_LEN);
        }
    }

    #[test]
    fn pads_and_cuts() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let lpad = pad_items(&chars("foo"), &chars("Bar"), 7, true).unwrap();
        assert_eq!(lpad.into_iter().collect::<String>(), "BarBfoo");
        let rpad = pad_items(&chars("foo"), &chars("Bar"), 2, false).unwrap();
        assert_eq!(rpad.into_iter().collect::<String>(), "fo");
        assert!(pad_items(&chars("foo"), &[], 7, true).is_none());
    }

    #[test]
    fn substring_is_one_based_and_clipped() {
        assert_eq!(substring_range(11, 6, None), (5, 11));
        assert_eq!(substring_range(5, 6, Some(3)), (5, 5));
        assert_eq!(substring_range(11, 0, Some(2)), (0, 2));
        assert_eq!(substring_range(11, -3, None), (8, 11));
    }

    #[test]
    fn instr_searches_both_ways() {
        assert_eq!(instr("corporate floor", "or", 1, 1), 2);
        assert_eq!(instr("corporate floor", "or", 4, 2), 14);
        assert_eq!(instr("corporate floor", "or", -4, 1), 5);
        assert_eq!(instr("corporate floor", "or", -4, 2), 2);
        assert_eq!(instr("short", "or", 4, 1), 0);
    }

    #[test]
    fn encodings_round_trip() {
        assert_eq!(encode_base64(b"Example!"), "RXhhbXBsZSE=");
        assert_eq!(decode_base64("RXhhbXBsZSE=").unwrap(), b"Example!");
        assert_eq!(decode_hex("0x578616d706C6521").unwrap()[0], 5);
        assert_eq!(decode_hex("578616d706C6521"), None);
        assert_eq!(decode_hex("X''").unwrap(), Vec::<u8>::new());
        assert_eq!(unescape_utf16("\\ud820\\udeb8").unwrap(), "\u{182b8}");
        assert_eq!(unescape_utf16("75"), None);
    }

    #[test]
    fn initcap_capitalises_words() {
        assert_eq!(initcap("the   Quick br0wn fOx"), "The   Quick Br0wn Fox");
        assert_eq!(initcap("some_string"), "Some_string");
    }

    #[test]
    fn splits_keep_empty_parts() {
        assert_eq!(split_text("a,,b,", ","), vec!["a", "", "b", ""]);
        assert_eq!(split_text("ab", ""), vec!["a", "b"]);
        assert_eq!(
            split_bytes(b"a--b", b"-"),
            vec![b"a".to_vec(), vec![], b"b".to_vec()]
        );
    }

    #[test]
    fn masks_by_character_class() {
        let m = Masks::from_args(&[], 0);
        let masked: String = "Ab1 z".chars().map(|c| m.apply(c)).collect();
        assert_eq!(masked, "Xxn-x");
    }

    #[test]
    fn java_replacements_translate() {
        assert_eq!(java_replacement("a$1b\\$"), "a${1}b$$");
    }
}
