//! ksqlDB's date and time functions: formatting and parsing with Java
//! `DateTimeFormatter` patterns (`yyyy-MM-dd HH:mm:ss.SSS zzz`), time zone
//! conversion, and date/time arithmetic with a unit keyword
//! (`DATEADD(DAYS, 1, d)`; the planner passes the unit as a string).
//!
//! Times without a zone argument are UTC. Zones are IANA names
//! (`America/Los_Angeles`) or offsets (`+0200`, `-05:00`, `UTC`). Parsing
//! is case-insensitive for month names and AM/PM; fields a pattern lacks
//! default to 1970-01-01T00:00:00.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::{OffsetComponents, OffsetName};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue, exec_err};

use super::rowwise::{Arg, RowKind, expect, int, string, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DateTimeFn {
    TimestampToString,
    StringToTimestamp,
    FormatTimestamp,
    ParseTimestamp,
    FormatDate,
    ParseDate,
    DateToString,
    StringToDate,
    FormatTime,
    ParseTime,
    ConvertTz,
    FromUnixtime,
    UnixTimestamp,
    UnixDate,
    FromDays,
    DateAdd,
    DateSub,
    TimeAdd,
    TimeSub,
    TimestampAdd,
    TimestampSub,
}

impl DateTimeFn {
    pub const ALL: [DateTimeFn; 21] = [
        DateTimeFn::TimestampToString,
        DateTimeFn::StringToTimestamp,
        DateTimeFn::FormatTimestamp,
        DateTimeFn::ParseTimestamp,
        DateTimeFn::FormatDate,
        DateTimeFn::ParseDate,
        DateTimeFn::DateToString,
        DateTimeFn::StringToDate,
        DateTimeFn::FormatTime,
        DateTimeFn::ParseTime,
        DateTimeFn::ConvertTz,
        DateTimeFn::FromUnixtime,
        DateTimeFn::UnixTimestamp,
        DateTimeFn::UnixDate,
        DateTimeFn::FromDays,
        DateTimeFn::DateAdd,
        DateTimeFn::DateSub,
        DateTimeFn::TimeAdd,
        DateTimeFn::TimeSub,
        DateTimeFn::TimestampAdd,
        DateTimeFn::TimestampSub,
    ];
}

/// The functions whose first argument is a time unit keyword.
pub const UNIT_FUNCTIONS: [&str; 6] = [
    "DATEADD",
    "DATESUB",
    "TIMEADD",
    "TIMESUB",
    "TIMESTAMPADD",
    "TIMESTAMPSUB",
];

/// Milliseconds in one of ksqlDB's time units (Java `TimeUnit` names).
pub fn unit_millis(unit: &str) -> Option<f64> {
    Some(match unit.to_uppercase().as_str() {
        "NANOSECONDS" => 1e-6,
        "MICROSECONDS" => 1e-3,
        "MILLISECONDS" => 1.0,
        "SECONDS" => 1e3,
        "MINUTES" => 60e3,
        "HOURS" => 3600e3,
        "DAYS" => 86_400e3,
        _ => return None,
    })
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, None)
}

fn time_type() -> DataType {
    DataType::Time32(TimeUnit::Millisecond)
}

const DAY_MS: i64 = 86_400_000;

impl RowKind for DateTimeFn {
    fn name(&self) -> &'static str {
        match self {
            DateTimeFn::TimestampToString => "timestamptostring",
            DateTimeFn::StringToTimestamp => "stringtotimestamp",
            DateTimeFn::FormatTimestamp => "format_timestamp",
            DateTimeFn::ParseTimestamp => "parse_timestamp",
            DateTimeFn::FormatDate => "format_date",
            DateTimeFn::ParseDate => "parse_date",
            DateTimeFn::DateToString => "datetostring",
            DateTimeFn::StringToDate => "stringtodate",
            DateTimeFn::FormatTime => "format_time",
            DateTimeFn::ParseTime => "parse_time",
            DateTimeFn::ConvertTz => "convert_tz",
            DateTimeFn::FromUnixtime => "from_unixtime",
            DateTimeFn::UnixTimestamp => "unix_timestamp",
            DateTimeFn::UnixDate => "unix_date",
            DateTimeFn::FromDays => "from_days",
            DateTimeFn::DateAdd => "dateadd",
            DateTimeFn::DateSub => "datesub",
            DateTimeFn::TimeAdd => "timeadd",
            DateTimeFn::TimeSub => "timesub",
            DateTimeFn::TimestampAdd => "timestampadd",
            DateTimeFn::TimestampSub => "timestampsub",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        use Arg::*;
        let name = self.name();
        let ts = |args: &[DataType], shapes: &[&[Arg]]| -> Result<Vec<DataType>> {
            // A TIMESTAMP argument stays as it is; the shapes say where.
            let mut coerced = expect(name, args, shapes)?;
            for (c, a) in coerced.iter_mut().zip(args) {
                if matches!(a, DataType::Timestamp(_, _)) {
                    *c = timestamp_type();
                }
            }
            Ok(coerced)
        };
        let is = |t: &DataType, want: fn(&DataType) -> bool| want(t) || *t == DataType::Null;
        let temporal = |i: usize, want: fn(&DataType) -> bool| -> Result<()> {
            match args.get(i) {
                Some(t) if is(t, want) => Ok(()),
                _ => expect(name, args, &[]).map(|_| ()),
            }
        };
        let is_ts = |t: &DataType| matches!(t, DataType::Timestamp(_, _));
        let is_date = |t: &DataType| *t == DataType::Date32;
        let is_time = |t: &DataType| matches!(t, DataType::Time32(_) | DataType::Time64(_));
        match self {
            DateTimeFn::TimestampToString => expect(name, args, &[&[Int, Str], &[Int, Str, Str]]),
            DateTimeFn::StringToTimestamp | DateTimeFn::ParseTimestamp => {
                expect(name, args, &[&[Str, Str], &[Str, Str, Str]])
            }
            DateTimeFn::FormatTimestamp => {
                temporal(0, is_ts)?;
                ts(args, &[&[Any, Str], &[Any, Str, Str]])
            }
            DateTimeFn::FormatDate => {
                temporal(0, is_date)?;
                expect(name, args, &[&[Any, Str]]).map(|mut t| {
                    t[0] = DataType::Date32;
                    t
                })
            }
            DateTimeFn::FormatTime => {
                temporal(0, is_time)?;
                expect(name, args, &[&[Any, Str]]).map(|mut t| {
                    t[0] = time_type();
                    t
                })
            }
            DateTimeFn::DateToString => expect(name, args, &[&[Int32, Str]]),
            DateTimeFn::ParseDate | DateTimeFn::StringToDate | DateTimeFn::ParseTime => {
                expect(name, args, &[&[Str, Str]])
            }
            DateTimeFn::ConvertTz => {
                temporal(0, is_ts)?;
                ts(args, &[&[Any, Str, Str]])
            }
            DateTimeFn::FromUnixtime => expect(name, args, &[&[Int]]),
            DateTimeFn::FromDays => expect(name, args, &[&[Int32]]),
            DateTimeFn::UnixTimestamp => {
                if !args.is_empty() {
                    temporal(0, is_ts)?;
                }
                ts(args, &[&[], &[Any]])
            }
            DateTimeFn::UnixDate => {
                if !args.is_empty() {
                    temporal(0, is_date)?;
                }
                expect(name, args, &[&[], &[Any]]).map(|mut t| {
                    if let Some(first) = t.first_mut() {
                        *first = DataType::Date32;
                    }
                    t
                })
            }
            DateTimeFn::DateAdd
            | DateTimeFn::DateSub
            | DateTimeFn::TimeAdd
            | DateTimeFn::TimeSub
            | DateTimeFn::TimestampAdd
            | DateTimeFn::TimestampSub => {
                let (want, target): (fn(&DataType) -> bool, DataType) = match self {
                    DateTimeFn::DateAdd | DateTimeFn::DateSub => (is_date, DataType::Date32),
                    DateTimeFn::TimeAdd | DateTimeFn::TimeSub => (is_time, time_type()),
                    _ => (is_ts, timestamp_type()),
                };
                temporal(2, want)?;
                expect(name, args, &[&[Str, Int, Any]]).map(|mut t| {
                    t[2] = target;
                    t
                })
            }
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self {
            DateTimeFn::TimestampToString
            | DateTimeFn::FormatTimestamp
            | DateTimeFn::FormatDate
            | DateTimeFn::DateToString
            | DateTimeFn::FormatTime => DataType::Utf8,
            DateTimeFn::StringToTimestamp | DateTimeFn::UnixTimestamp => DataType::Int64,
            DateTimeFn::ParseTimestamp
            | DateTimeFn::ConvertTz
            | DateTimeFn::FromUnixtime
            | DateTimeFn::TimestampAdd
            | DateTimeFn::TimestampSub => timestamp_type(),
            DateTimeFn::ParseDate
            | DateTimeFn::FromDays
            | DateTimeFn::DateAdd
            | DateTimeFn::DateSub => DataType::Date32,
            DateTimeFn::StringToDate | DateTimeFn::UnixDate => DataType::Int32,
            DateTimeFn::ParseTime | DateTimeFn::TimeAdd | DateTimeFn::TimeSub => time_type(),
        })
    }

    fn volatile(&self) -> bool {
        matches!(self, DateTimeFn::UnixTimestamp | DateTimeFn::UnixDate)
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let s = |i: usize| args.get(i).and_then(text);
        let millis = |i: usize| args.get(i).and_then(temporal_millis);
        let null = Ok(ScalarValue::Null);
        match self {
            DateTimeFn::TimestampToString | DateTimeFn::FormatTimestamp => {
                let (Some(ms), Some(pattern)) = (millis(0), s(1)) else {
                    return null;
                };
                let zone = match args.get(2) {
                    Some(z) => match text(z) {
                        Some(z) => Some(parse_zone(z)?),
                        None => return null,
                    },
                    None => None,
                };
                Ok(string(format_millis(ms, &Pattern::parse(pattern)?, zone)?))
            }
            DateTimeFn::StringToTimestamp | DateTimeFn::ParseTimestamp => {
                let (Some(input), Some(pattern)) = (s(0), s(1)) else {
                    return null;
                };
                let zone = match args.get(2) {
                    Some(z) => match text(z) {
                        Some(z) => Some(parse_zone(z)?),
                        None => return null,
                    },
                    None => None,
                };
                let ms = parse_millis(input, &Pattern::parse(pattern)?, zone)?;
                Ok(if *self == DateTimeFn::StringToTimestamp {
                    ScalarValue::Int64(Some(ms))
                } else {
                    ScalarValue::TimestampMillisecond(Some(ms), None)
                })
            }
            DateTimeFn::FormatDate | DateTimeFn::DateToString | DateTimeFn::FormatTime => {
                let (Some(value), Some(pattern)) = (args.first(), s(1)) else {
                    return null;
                };
                let ms = match (self, value) {
                    (DateTimeFn::FormatTime, v) => temporal_millis(v),
                    (_, v) => days_of(v).map(|d| d * DAY_MS),
                };
                let Some(ms) = ms else {
                    return null;
                };
                Ok(string(format_millis(ms, &Pattern::parse(pattern)?, None)?))
            }
            DateTimeFn::ParseDate | DateTimeFn::StringToDate => {
                let (Some(input), Some(pattern)) = (s(0), s(1)) else {
                    return null;
                };
                // Dates, as in ksqlDB, may have text after the pattern.
                let ms = parse_prefix_millis(input, &Pattern::parse(pattern)?)?;
                let days = ms.div_euclid(DAY_MS) as i32;
                Ok(if *self == DateTimeFn::ParseDate {
                    ScalarValue::Date32(Some(days))
                } else {
                    ScalarValue::Int32(Some(days))
                })
            }
            DateTimeFn::ParseTime => {
                let (Some(input), Some(pattern)) = (s(0), s(1)) else {
                    return null;
                };
                let ms = parse_millis(input, &Pattern::parse(pattern)?, None)?;
                Ok(ScalarValue::Time32Millisecond(Some(
                    ms.rem_euclid(DAY_MS) as i32
                )))
            }
            DateTimeFn::ConvertTz => {
                let (Some(ms), Some(from), Some(to)) = (millis(0), s(1), s(2)) else {
                    return null;
                };
                let (from, to) = (parse_zone(from)?, parse_zone(to)?);
                let local = utc_datetime(ms)?.naive_utc();
                let instant = match from.local_offset(&local) {
                    Some(off) => ms - i64::from(off) * 1000,
                    None => return exec_err!("CONVERT_TZ: no such local time {local}"),
                };
                let offset = to.offset_at(instant)?;
                Ok(ScalarValue::TimestampMillisecond(
                    Some(instant + i64::from(offset) * 1000),
                    None,
                ))
            }
            DateTimeFn::FromUnixtime => Ok(match args.first().and_then(int) {
                Some(ms) => ScalarValue::TimestampMillisecond(Some(ms), None),
                None => ScalarValue::Null,
            }),
            DateTimeFn::FromDays => Ok(match args.first().and_then(int) {
                Some(d) => ScalarValue::Date32(i32::try_from(d).ok()),
                None => ScalarValue::Null,
            }),
            DateTimeFn::UnixTimestamp => Ok(match args.first() {
                None => ScalarValue::Int64(Some(Utc::now().timestamp_millis())),
                Some(v) => ScalarValue::Int64(temporal_millis(v)),
            }),
            DateTimeFn::UnixDate => Ok(match args.first() {
                None => ScalarValue::Int32(Some(
                    Utc::now().timestamp_millis().div_euclid(DAY_MS) as i32
                )),
                Some(v) => ScalarValue::Int32(days_of(v).and_then(|d| i32::try_from(d).ok())),
            }),
            DateTimeFn::DateAdd
            | DateTimeFn::DateSub
            | DateTimeFn::TimeAdd
            | DateTimeFn::TimeSub
            | DateTimeFn::TimestampAdd
            | DateTimeFn::TimestampSub => {
                let (Some(unit), Some(amount)) = (s(0), args.get(1).and_then(int)) else {
                    return null;
                };
                let Some(unit_ms) = unit_millis(unit) else {
                    return exec_err!("{}: unknown time unit {unit}", self.name());
                };
                let sign = if matches!(
                    self,
                    DateTimeFn::DateSub | DateTimeFn::TimeSub | DateTimeFn::TimestampSub
                ) {
                    -1.0
                } else {
                    1.0
                };
                let delta = (sign * amount as f64 * unit_ms) as i64;
                let Some(value) = args.get(2) else {
                    return null;
                };
                Ok(match self {
                    DateTimeFn::DateAdd | DateTimeFn::DateSub => match days_of(value) {
                        // Whole days only, truncating toward zero.
                        Some(d) => ScalarValue::Date32(i32::try_from(d + delta / DAY_MS).ok()),
                        None => ScalarValue::Null,
                    },
                    DateTimeFn::TimeAdd | DateTimeFn::TimeSub => match temporal_millis(value) {
                        Some(t) => ScalarValue::Time32Millisecond(Some(
                            (t + delta).rem_euclid(DAY_MS) as i32,
                        )),
                        None => ScalarValue::Null,
                    },
                    _ => match temporal_millis(value) {
                        Some(t) => ScalarValue::TimestampMillisecond(Some(t + delta), None),
                        None => ScalarValue::Null,
                    },
                })
            }
        }
    }
}

/// Milliseconds of a timestamp (since the epoch), a time (since
/// midnight), a date (its midnight) or a BIGINT.
fn temporal_millis(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampMillisecond(x, _) => *x,
        ScalarValue::TimestampSecond(x, _) => x.map(|x| x * 1000),
        ScalarValue::TimestampMicrosecond(x, _) => x.map(|x| x.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(x, _) => x.map(|x| x.div_euclid(1_000_000)),
        ScalarValue::Time32Millisecond(x) => x.map(i64::from),
        ScalarValue::Time32Second(x) => x.map(|x| i64::from(x) * 1000),
        ScalarValue::Time64Microsecond(x) => x.map(|x| x / 1000),
        ScalarValue::Time64Nanosecond(x) => x.map(|x| x / 1_000_000),
        ScalarValue::Date32(x) => x.map(|d| i64::from(d) * DAY_MS),
        other => int(other),
    }
}

fn days_of(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Date32(x) => x.map(i64::from),
        other => int(other),
    }
}

fn utc_datetime(ms: i64) -> Result<DateTime<Utc>> {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => Ok(t),
        None => exec_err!("timestamp {ms} is out of range"),
    }
}

/// A time zone: an IANA zone or a fixed offset.
#[derive(Debug, Clone, Copy)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

/// A zone as ksqlDB (Java's `ZoneId`) accepts it.
pub fn parse_zone(text: &str) -> Result<Zone> {
    let t = text.trim();
    if matches!(t.to_uppercase().as_str(), "UTC" | "GMT" | "Z" | "UT") {
        return Ok(Zone::Fixed(FixedOffset::east_opt(0).unwrap_or(Utc.fix())));
    }
    let offset_text = ["UTC", "GMT", "UT"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t);
    if let Some(seconds) = parse_offset(offset_text)
        && let Some(fixed) = FixedOffset::east_opt(seconds)
    {
        return Ok(Zone::Fixed(fixed));
    }
    match t.parse::<chrono_tz::Tz>() {
        Ok(tz) => Ok(Zone::Named(tz)),
        Err(_) => exec_err!("Unknown time-zone ID: {text}"),
    }
}

/// `+HH`, `+HHMM`, `+HH:MM` (and `-`) as seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.chars().next()? {
        '+' => (1, &text[1..]),
        '-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m, s) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?, 0),
        6 => (
            digits[..2].parse().ok()?,
            digits[2..4].parse().ok()?,
            digits[4..].parse().ok()?,
        ),
        _ => return None,
    };
    Some(sign * (h * 3600 + m * 60 + s))
}

impl Zone {
    /// Seconds east of UTC at the instant `ms`.
    fn offset_at(&self, ms: i64) -> Result<i32> {
        let utc = utc_datetime(ms)?;
        Ok(match self {
            Zone::Fixed(f) => f.local_minus_utc(),
            Zone::Named(tz) => tz
                .offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        })
    }

    /// Seconds east of UTC for the local time `local` (the earlier offset
    /// when ambiguous, the later when in a gap).
    fn local_offset(&self, local: &NaiveDateTime) -> Option<i32> {
        match self {
            Zone::Fixed(f) => Some(f.local_minus_utc()),
            Zone::Named(tz) => {
                let offset = match tz.offset_from_local_datetime(local) {
                    chrono::LocalResult::Single(o) => o,
                    chrono::LocalResult::Ambiguous(o, _) => o,
                    chrono::LocalResult::None => tz
                        .offset_from_local_datetime(&(*local + Duration::hours(1)))
                        .earliest()?,
                };
                Some(offset.fix().local_minus_utc())
            }
        }
    }

    /// The zone's short name at `ms` (`PDT`), or its offset.
    fn abbreviation(&self, ms: i64) -> Result<String> {
        match self {
            Zone::Named(tz) => {
                let utc = utc_datetime(ms)?;
                let offset = tz.offset_from_utc_datetime(&utc.naive_utc());
                Ok(match offset.abbreviation() {
                    Some(a) if !a.starts_with(['+', '-']) => a.to_string(),
                    _ => offset_text(offset.base_utc_offset().num_seconds() as i32, true),
                })
            }
            Zone::Fixed(f) if f.local_minus_utc() == 0 => Ok("UTC".into()),
            Zone::Fixed(f) => Ok(offset_text(f.local_minus_utc(), true)),
        }
    }

    fn id(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_string(),
            Zone::Fixed(f) if f.local_minus_utc() == 0 => "Z".into(),
            Zone::Fixed(f) => offset_text(f.local_minus_utc(), true),
        }
    }
}

fn offset_text(seconds: i32, colon: bool) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    if colon {
        format!("{sign}{:02}:{:02}", s / 3600, (s / 60) % 60)
    } else {
        format!("{sign}{:02}{:02}", s / 3600, (s / 60) % 60)
    }
}

/// One element of a Java date-time pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(String),
    /// A pattern letter and how many times it repeats.
    Field(char, usize),
}

/// A parsed Java `DateTimeFormatter` pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern(Vec<Token>);

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // '' is a quote; 'text' is literal text.
                if chars.get(i + 1) == Some(&'\'') {
                    tokens.push(Token::Literal("'".into()));
                    i += 2;
                    continue;
                }
                let mut literal = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return exec_err!("Unterminated quote in pattern '{text}'"),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            literal.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Literal(literal));
            } else if c.is_ascii_alphabetic() {
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                if !"GyuMLdDEeaHhKkmsSnAzZXxVOQqwWY".contains(c) {
                    return exec_err!("Unknown pattern letter: {c}");
                }
                tokens.push(Token::Field(c, n));
                i += n;
            } else {
                tokens.push(Token::Literal(c.to_string()));
                i += 1;
            }
        }
        Ok(Pattern(tokens))
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Renders the instant `ms` in `zone` (UTC when none) by `pattern`.
pub fn format_millis(ms: i64, pattern: &Pattern, zone: Option<Zone>) -> Result<String> {
    let zone = zone.unwrap_or(Zone::Fixed(Utc.fix()));
    let offset = zone.offset_at(ms)?;
    let local = utc_datetime(ms + i64::from(offset) * 1000)?.naive_utc();
    let mut out = String::new();
    let pad = |out: &mut String, v: i64, n: usize| {
        if v < 0 {
            out.push('-');
        }
        out.push_str(&format!("{:0n$}", v.abs()));
    };
    for token in &pattern.0 {
        match token {
            Token::Literal(l) => out.push_str(l),
            Token::Field(c, n) => {
                let n = *n;
                match c {
                    'y' | 'u' | 'Y' => {
                        let year = i64::from(local.year());
                        if n == 2 {
                            pad(&mut out, year.rem_euclid(100), 2);
                        } else {
                            pad(&mut out, year, n);
                        }
                    }
                    'M' | 'L' => {
                        let month = local.month() as usize;
                        match n {
                            1 | 2 => pad(&mut out, month as i64, n),
                            3 => out.push_str(&MONTHS[month - 1][..3]),
                            _ => out.push_str(MONTHS[month - 1]),
                        }
                    }
                    'd' => pad(&mut out, i64::from(local.day()), n),
                    'D' => pad(&mut out, i64::from(local.ordinal()), n),
                    'E' => {
                        let day = DAYS[local.weekday().num_days_from_monday() as usize];
                        out.push_str(if n <= 3 { &day[..3] } else { day });
                    }
                    'a' => out.push_str(if local.hour() < 12 { "AM" } else { "PM" }),
                    'H' => pad(&mut out, i64::from(local.hour()), n),
                    'k' => pad(
                        &mut out,
                        i64::from(if local.hour() == 0 { 24 } else { local.hour() }),
                        n,
                    ),
                    'h' => {
                        let h = local.hour() % 12;
                        pad(&mut out, i64::from(if h == 0 { 12 } else { h }), n)
                    }
                    'K' => pad(&mut out, i64::from(local.hour() % 12), n),
                    'm' => pad(&mut out, i64::from(local.minute()), n),
                    's' => pad(&mut out, i64::from(local.second()), n),
                    'S' => {
                        let nanos = format!("{:09}", local.nanosecond() % 1_000_000_000);
                        let digits: String = nanos
                            .chars()
                            .chain(std::iter::repeat('0'))
                            .take(n)
                            .collect();
                        out.push_str(&digits);
                    }
                    'n' => out.push_str(&(local.nanosecond() % 1_000_000_000).to_string()),
                    'A' => out.push_str(&local.num_seconds_from_midnight().to_string()),
                    'z' => out.push_str(&zone.abbreviation(ms)?),
                    'V' => out.push_str(&zone.id()),
                    'Z' => out.push_str(&offset_text(offset, n >= 4)),
                    'X' | 'x' => {
                        if *c == 'X' && offset == 0 {
                            out.push('Z');
                        } else {
                            let text = offset_text(offset, n >= 3);
                            if n == 1 && offset % 3600 == 0 {
                                out.push_str(&text[..3]);
                            } else {
                                out.push_str(&text);
                            }
                        }
                    }
                    'O' => {
                        if offset == 0 {
                            out.push_str("GMT");
                        } else {
                            out.push_str(&format!("GMT{}", offset_text(offset, true)));
                        }
                    }
                    'G' => out.push_str(if local.year() > 0 { "AD" } else { "BC" }),
                    other => return exec_err!("Pattern letter {other} cannot be formatted"),
                }
            }
        }
    }
    Ok(out)
}

/// Parses the start of `input` by `pattern` (UTC), ignoring any text
/// after it.
fn parse_prefix_millis(input: &str, pattern: &Pattern) -> Result<i64> {
    parse_with(input, pattern, None, true)
}

/// Parses `input` by `pattern` into epoch milliseconds; a zone in the text
/// wins over `zone`, which wins over UTC.
pub fn parse_millis(input: &str, pattern: &Pattern, zone: Option<Zone>) -> Result<i64> {
    parse_with(input, pattern, zone, false)
}

fn parse_with(
    input: &str,
    pattern: &Pattern,
    zone: Option<Zone>,
    allow_trailing: bool,
) -> Result<i64> {
    let fail = || {
        datafusion::error::DataFusionError::Execution(format!(
            "Text '{input}' could not be parsed with the given pattern"
        ))
    };
    let chars: Vec<char> = input.chars().collect();
    let mut at = 0;
    let (mut year, mut month, mut day) = (1970i32, 1u32, 1u32);
    let mut day_of_year: Option<u32> = None;
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    let mut pm: Option<bool> = None;
    let mut parsed_offset: Option<i32> = None;
    let mut parsed_zone: Option<Zone> = None;
    let tokens = &pattern.0;
    for (ti, token) in tokens.iter().enumerate() {
        match token {
            Token::Literal(l) => {
                for lc in l.chars() {
                    match chars.get(at) {
                        Some(c) if c.eq_ignore_ascii_case(&lc) => at += 1,
                        _ => return Err(fail()),
                    }
                }
            }
            Token::Field(c, n) => {
                let n = *n;
                // Digits run to the next token unless that token is also
                // numeric, when this field takes exactly its width.
                let next_numeric = matches!(
                    tokens.get(ti + 1),
                    Some(Token::Field(nc, _)) if "yuMdDHhKkmsSn".contains(*nc)
                );
                let negative_ok = matches!(c, 'y' | 'u');
                let digits = |at: &mut usize, max: usize| -> Result<i64> {
                    let limit = if next_numeric { n } else { max.max(n) };
                    take_digits(&chars, at, limit, negative_ok).ok_or_else(fail)
                };
                match c {
                    'y' | 'u' | 'Y' => {
                        let v = digits(&mut at, 10)?;
                        year = if n == 2 { 2000 + v as i32 } else { v as i32 };
                    }
                    'M' | 'L' if n >= 3 => {
                        let rest: String = chars[at..].iter().collect::<String>().to_lowercase();
                        let found = MONTHS.iter().enumerate().find_map(|(i, m)| {
                            let full = m.to_lowercase();
                            if n >= 4 && rest.starts_with(&full) {
                                Some((i, full.len()))
                            } else if rest.starts_with(&full[..3]) {
                                Some((i, 3))
                            } else {
                                None
                            }
                        });
                        let Some((i, len)) = found else {
                            return Err(fail());
                        };
                        month = i as u32 + 1;
                        at += len;
                    }
                    'M' | 'L' => month = digits(&mut at, 2)? as u32,
                    'd' => day = digits(&mut at, 2)? as u32,
                    'D' => day_of_year = Some(digits(&mut at, 3)? as u32),
                    'H' | 'k' => hour = (digits(&mut at, 2)? % 24) as u32,
                    'h' | 'K' => {
                        hour = (digits(&mut at, 2)? % 12) as u32;
                    }
                    'm' => minute = digits(&mut at, 2)? as u32,
                    's' => second = digits(&mut at, 2)? as u32,
                    'S' => {
                        let start = at;
                        let v = digits(&mut at, 9)?;
                        let width = (at - start) as u32;
                        nanos = (v as u64 * 10u64.pow(9u32.saturating_sub(width))) as u32;
                    }
                    'n' => nanos = digits(&mut at, 9)? as u32,
                    'a' => {
                        let rest: String = chars[at..].iter().take(2).collect();
                        match rest.to_uppercase().as_str() {
                            "AM" => pm = Some(false),
                            "PM" => pm = Some(true),
                            _ => return Err(fail()),
                        }
                        at += 2;
                    }
                    'E' => {
                        let rest: String = chars[at..].iter().collect::<String>().to_lowercase();
                        let len = DAYS.iter().find_map(|d| {
                            let full = d.to_lowercase();
                            if rest.starts_with(&full) {
                                Some(full.len())
                            } else if rest.starts_with(&full[..3]) {
                                Some(3)
                            } else {
                                None
                            }
                        });
                        at += len.ok_or_else(fail)?;
                    }
                    'X' | 'x' | 'Z' => {
                        if *c == 'X' && matches!(chars.get(at), Some('Z') | Some('z')) {
                            parsed_offset = Some(0);
                            at += 1;
                        } else {
                            let start = at;
                            at += 1;
                            while at < chars.len()
                                && (chars[at].is_ascii_digit() || chars[at] == ':')
                            {
                                at += 1;
                            }
                            let text: String = chars[start..at].iter().collect();
                            parsed_offset = Some(parse_offset(&text).ok_or_else(fail)?);
                        }
                    }
                    'z' | 'V' | 'O' => {
                        let start = at;
                        while at < chars.len() && !chars[at].is_whitespace() {
                            at += 1;
                        }
                        let text: String = chars[start..at].iter().collect();
                        parsed_zone = Some(parse_zone(&text).map_err(|_| fail())?);
                    }
                    _ => return Err(fail()),
                }
            }
        }
    }
    if at != chars.len() && !allow_trailing {
        return Err(fail());
    }
    // Without AM/PM a 12-hour clock reads as morning.
    if pm == Some(true) && hour < 12 {
        hour += 12;
    }
    let date = match day_of_year {
        Some(d) => NaiveDate::from_yo_opt(year, d),
        None => NaiveDate::from_ymd_opt(year, month, day),
    }
    .ok_or_else(fail)?;
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or_else(fail)?;
    let local = NaiveDateTime::new(date, time);
    let offset = match (parsed_offset, parsed_zone.or(zone)) {
        (Some(o), _) => o,
        (None, Some(z)) => z.local_offset(&local).ok_or_else(fail)?,
        (None, None) => 0,
    };
    Ok(local.and_utc().timestamp_millis() - i64::from(offset) * 1000)
}

/// A timestamp written `yyyy-MM-dd'T'HH:mm:ss.SSS` with any trailing
/// part left out (`'2018'`, `'2018-01-01T10'`) and an optional zone
/// offset (`+0445`, `-05:00`, `Z`), as epoch millis; UTC without one.
pub fn parse_partial_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let numbers = |s: &str, sep: char| -> Option<Vec<u32>> {
        s.split(sep).map(|p| p.parse::<u32>().ok()).collect()
    };
    let date = numbers(date_part, '-')?;
    let (year, month, day) = match date.as_slice() {
        [y] => (*y, 1, 1),
        [y, m] => (*y, *m, 1),
        [y, m, d] => (*y, *m, *d),
        _ => return None,
    };
    let (mut hour, mut minute, mut second, mut millis, mut offset) = (0, 0, 0, 0, 0i32);
    if let Some(time) = time_part {
        let zone_at = time.find(['+', '-', 'Z']);
        let (clock, zone) = match zone_at {
            Some(i) => (&time[..i], Some(&time[i..])),
            None => (time, None),
        };
        if let Some(zone) = zone {
            offset = if zone == "Z" { 0 } else { parse_offset(zone)? };
        }
        let (hms, fraction) = match clock.split_once('.') {
            Some((h, f)) => (h, Some(f)),
            None => (clock, None),
        };
        let parts = numbers(hms, ':')?;
        match parts.as_slice() {
            [h] => hour = *h,
            [h, m] => (hour, minute) = (*h, *m),
            [h, m, s] => (hour, minute, second) = (*h, *m, *s),
            _ => return None,
        }
        if let Some(f) = fraction {
            let digits: String = f.chars().chain(std::iter::repeat('0')).take(3).collect();
            millis = digits.parse().ok()?;
        }
    }
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_milli_opt(hour, minute, second, millis)?;
    Some(local.and_utc().timestamp_millis() - i64::from(offset) * 1000)
}

/// Up to `limit` digits (with a leading `-` when `negative_ok`) from
/// `at`, advancing it.
fn take_digits(chars: &[char], at: &mut usize, limit: usize, negative_ok: bool) -> Option<i64> {
    let start = *at;
    let negative = negative_ok && chars.get(*at) == Some(&'-');
    if negative {
        *at += 1;
    }
    let digits_start = *at;
    while *at < chars.len() && *at - digits_start < limit && chars[*at].is_ascii_digit() {
        *at += 1;
    }
    if *at == digits_start {
        *at = start;
        return None;
    }
    let text: String = chars[start..*at].iter().collect();
    text.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ms: i64, p: &str, zone: Option<&str>) -> String {
        let zone = zone.map(|z| parse_zone(z).unwrap());
        format_millis(ms, &Pattern::parse(p).unwrap(), zone).unwrap()
    }

    fn parse(s: &str, p: &str) -> i64 {
        parse_millis(s, &Pattern::parse(p).unwrap(), None).unwrap()
    }

    #[test]
    fn formats_java_patterns() {
        assert_eq!(
            fmt(
                1526075913000,
                "yyyy-MM-dd HH:mm:ss zzz",
                Some("America/Los_Angeles")
            ),
            "2018-05-11 14:58:33 PDT"
        );
        assert_eq!(
            fmt(1526075913000, "yyyy-MM-dd HH:mm:ss", None),
            "2018-05-11 21:58:33"
        );
        assert_eq!(fmt(-DAY_MS, "dd-MM-yyyy'Sophia'", None), "31-12-1969Sophia");
        assert_eq!(fmt(18993 * DAY_MS, "dd-MMM-yyyy", None), "01-Jan-2022");
        assert_eq!(fmt(1234, "HH:mm:ss.SSS", None), "00:00:01.234");
    }

    #[test]
    fn parses_java_patterns() {
        assert_eq!(parse("2018-05-11Lit", "yyyy-MM-dd'Lit'"), 17662 * DAY_MS);
        assert_eq!(parse("01-JAN-2022", "dd-MMM-yyyy"), 18993 * DAY_MS);
        assert_eq!(parse("JAN-2022", "MMM-yyyy"), 18993 * DAY_MS);
        assert_eq!(parse("01:00:00 Pm", "hh:mm:ss a"), 46_800_000);
        assert_eq!(parse("11/05/19", "HH/mm/ss"), 39_919_000);
        assert_eq!(
            parse("2018-05-11T21:58:33Z", "yyyy-MM-dd'T'HH:mm:ssX"),
            1526075913000
        );
        assert_eq!(
            parse("2018-05-11T23:58:33.1+0200", "yyyy-MM-dd'T'HH:mm:ss.SX"),
            1526075913100
        );
    }

    #[test]
    fn partial_timestamps_fill_in_the_rest() {
        assert_eq!(parse_partial_timestamp("2018"), Some(1514764800000));
        assert_eq!(
            parse_partial_timestamp("2018-01-01T00:00:00.001"),
            Some(1514764800001)
        );
        assert_eq!(
            parse_partial_timestamp("2020-02-10T08:31:44.001+0000"),
            Some(1581323504001)
        );
        assert_eq!(
            parse_partial_timestamp("2019-01-01T00:00:00+0445"),
            Some(1546300800000 - (4 * 3600 + 45 * 60) * 1000)
        );
        assert_eq!(parse_partial_timestamp("soon"), None);
    }

    #[test]
    fn zones_parse_as_java_does() {
        assert!(
            matches!(parse_zone("+0200").unwrap(), Zone::Fixed(f) if f.local_minus_utc() == 7200)
        );
        assert!(matches!(
            parse_zone("America/New_York").unwrap(),
            Zone::Named(_)
        ));
        assert!(parse_zone("Mars/Olympus").is_err());
    }
}
