//! ksqlDB's URL functions: `URL_ENCODE_PARAM`, `URL_DECODE_PARAM` and the
//! `URL_EXTRACT_*` family.
//!
//! URLs split as an RFC 3986 URI does (`scheme:[//authority]path[?query]
//! [#fragment]`); extracted path, query and fragment are percent-decoded,
//! as Java's `URI` getters return them. A part that is absent is null. Form
//! encoding follows `application/x-www-form-urlencoded` (space is `+`).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};

use super::rowwise::{Arg, RowKind, expect, string, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlFn {
    EncodeParam,
    DecodeParam,
    ExtractFragment,
    ExtractHost,
    ExtractParameter,
    ExtractPath,
    ExtractPort,
    ExtractProtocol,
    ExtractQuery,
}

impl UrlFn {
    pub const ALL: [UrlFn; 9] = [
        UrlFn::EncodeParam,
        UrlFn::DecodeParam,
        UrlFn::ExtractFragment,
        UrlFn::ExtractHost,
        UrlFn::ExtractParameter,
        UrlFn::ExtractPath,
        UrlFn::ExtractPort,
        UrlFn::ExtractProtocol,
        UrlFn::ExtractQuery,
    ];
}

impl RowKind for UrlFn {
    fn name(&self) -> &'static str {
        match self {
            UrlFn::EncodeParam => "url_encode_param",
            UrlFn::DecodeParam => "url_decode_param",
            UrlFn::ExtractFragment => "url_extract_fragment",
            UrlFn::ExtractHost => "url_extract_host",
            UrlFn::ExtractParameter => "url_extract_parameter",
            UrlFn::ExtractPath => "url_extract_path",
            UrlFn::ExtractPort => "url_extract_port",
            UrlFn::ExtractProtocol => "url_extract_protocol",
            UrlFn::ExtractQuery => "url_extract_query",
        }
    }

    fn coerce(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match self {
            UrlFn::ExtractParameter => expect(self.name(), args, &[&[Arg::Str, Arg::Str]]),
            _ => expect(self.name(), args, &[&[Arg::Str]]),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(match self {
            UrlFn::ExtractPort => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn call(&self, args: &[ScalarValue], _: &DataType) -> Result<ScalarValue> {
        let Some(input) = args.first().and_then(text) else {
            return Ok(ScalarValue::Null);
        };
        Ok(match self {
            UrlFn::EncodeParam => string(form_encode(input)),
            UrlFn::DecodeParam => match form_decode(input) {
                Some(s) => string(s),
                None => return exec_err!("URL_DECODE_PARAM: malformed escape in '{input}'"),
            },
            _ => {
                let Some(url) = Url::parse(input) else {
                    return Ok(ScalarValue::Null);
                };
                let decoded = |part: Option<&str>| match part.map(percent_decode) {
                    Some(Some(s)) => string(s),
                    _ => ScalarValue::Null,
                };
                match self {
                    UrlFn::ExtractFragment => decoded(url.fragment),
                    UrlFn::ExtractHost => url.host.map(string).unwrap_or(ScalarValue::Null),
                    UrlFn::ExtractPath => decoded(Some(url.path)),
                    UrlFn::ExtractPort => ScalarValue::Int32(url.port),
                    UrlFn::ExtractProtocol => url.scheme.map(string).unwrap_or(ScalarValue::Null),
                    UrlFn::ExtractQuery => decoded(url.query),
                    UrlFn::ExtractParameter => {
                        let Some(name) = args.get(1).and_then(text) else {
                            return Ok(ScalarValue::Null);
                        };
                        let value = url.query.and_then(|q| {
                            q.split('&')
                                .filter_map(|pair| pair.split_once('='))
                                .find(|(k, _)| percent_decode(k).as_deref() == Some(name))
                                .map(|(_, v)| v)
                        });
                        decoded(value)
                    }
                    UrlFn::EncodeParam | UrlFn::DecodeParam => ScalarValue::Null,
                }
            }
        })
    }
}

/// The parts of a URI reference.
#[derive(Debug, PartialEq)]
struct Url<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<i32>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> Url<'a> {
    /// `None` when the text is no URI (a bad port).
    fn parse(text: &'a str) -> Option<Url<'a>> {
        let (rest, fragment) = match text.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (text, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once(':') {
            Some((s, r))
                if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
            {
                (Some(s), r)
            }
            _ => (None, rest),
        };
        let (host, port, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                let (authority, path) = after.split_at(end);
                let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                let (host, port) = match host_port.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || p.is_empty() => {
                        if p.is_empty() {
                            (h, None)
                        } else {
                            (h, Some(p.parse::<i32>().ok()?))
                        }
                    }
                    _ => (host_port, None),
                };
                ((!host.is_empty()).then_some(host), port, path)
            }
            None => (None, None, rest),
        };
        Some(Url {
            scheme,
            host,
            port,
            path,
            query,
            fragment,
        })
    }
}

/// `%XX` escapes decoded as UTF-8; `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<String> {
    decode(s, false)
}

/// Form decoding: `%XX` escapes and `+` for space.
fn form_decode(s: &str) -> Option<String> {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Form encoding: letters, digits and `.-*_` stay; space is `+`; every
/// other byte of the UTF-8 form is `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls_into_parts() {
        let u = Url::parse("http://test@confluent.io:8080/nested/path?q=2#frag").unwrap();
        assert_eq!(u.scheme, Some("http"));
        assert_eq!(u.host, Some("confluent.io"));
        assert_eq!(u.port, Some(8080));
        assert_eq!(u.path, "/nested/path");
        assert_eq!(u.query, Some("q=2"));
        assert_eq!(u.fragment, Some("frag"));
        let bare = Url::parse("www.confluent.io").unwrap();
        assert_eq!(bare.scheme, None);
        assert_eq!(bare.host, None);
        assert_eq!(bare.path, "www.confluent.io");
        assert_eq!(Url::parse("http://www.test.com?query").unwrap().path, "");
    }

    #[test]
    fn form_encoding_round_trips() {
        assert_eq!(form_encode("?foo $bar"), "%3Ffoo+%24bar");
        assert_eq!(form_decode("%3Ffoo+%24bar").as_deref(), Some("?foo $bar"));
        assert_eq!(form_decode("%zz"), None);
    }
}
