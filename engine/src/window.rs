//! Windows: how records are grouped in time, and how windowed keys look
//! on the wire.
//!
//! A windowed batch carries `WINDOWSTART` and `WINDOWEND` (epoch millis)
//! after the pseudo columns. On topics, a windowed key is the key bytes
//! followed by the window, as Kafka Streams' windowed serdes write it:
//! 8 big-endian bytes of start for time windows; end then start for
//! sessions.

use crate::error::{EngineError, Result};

/// Name of the window start column of windowed batches.
pub const WINDOWSTART: &str = "WINDOWSTART";
/// Name of the window end column of windowed batches.
pub const WINDOWEND: &str = "WINDOWEND";

/// ksqlDB's default grace period when a query names none: 24 hours, as
/// Kafka Streams' legacy windows (EMIT FINAL defaults to zero instead).
pub const DEFAULT_GRACE_MS: i64 = 24 * 60 * 60 * 1000;

/// The kind of window of a windowed stream or table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowType {
    Tumbling { size_ms: i64 },
    Hopping { size_ms: i64, advance_ms: i64 },
    Session,
}

impl WindowType {
    pub fn is_session(&self) -> bool {
        matches!(self, WindowType::Session)
    }

    /// ksqlDB's name: `TUMBLING`, `HOPPING`, `SESSION`.
    pub fn name(&self) -> &'static str {
        match self {
            WindowType::Tumbling { .. } => "TUMBLING",
            WindowType::Hopping { .. } => "HOPPING",
            WindowType::Session => "SESSION",
        }
    }

    /// Start times of the time windows `timestamp` falls in, oldest first
    /// (none for sessions).
    pub fn windows_for(&self, timestamp: i64) -> impl Iterator<Item = i64> + use<> {
        let (first, last, step) = match *self {
            WindowType::Tumbling { size_ms } => {
                let start = timestamp.saturating_sub(timestamp.rem_euclid(size_ms));
                (start, start, size_ms)
            }
            WindowType::Hopping {
                size_ms,
                advance_ms,
            } => {
                let lowest = timestamp
                    .saturating_sub(size_ms)
                    .saturating_add(advance_ms)
                    .max(0);
                let first = lowest - lowest.rem_euclid(advance_ms);
                // Windows start no later than the record, and end after it.
                let first = if first.saturating_add(size_ms) > timestamp {
                    first
                } else {
                    first.saturating_add(advance_ms)
                };
                (first, timestamp, advance_ms)
            }
            WindowType::Session => (1, 0, 1),
        };
        (first..=last).step_by(step.max(1) as usize)
    }

    /// Appends the window to serialized key bytes.
    pub fn encode_key(&self, mut key: Vec<u8>, start: i64, end: i64) -> Vec<u8> {
        if self.is_session() {
            key.extend_from_slice(&end.to_be_bytes());
        }
        key.extend_from_slice(&start.to_be_bytes());
        key
    }

    /// Splits windowed key bytes into the key and its (start, end).
    pub fn decode_key<'a>(&self, bytes: &'a [u8]) -> Result<(&'a [u8], i64, i64)> {
        let read = |b: &[u8]| -> i64 {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        };
        match *self {
            WindowType::Session => {
                let Some(split) = bytes.len().checked_sub(16) else {
                    return Err(EngineError::Serde(
                        "session-windowed key is shorter than 16 bytes".into(),
                    ));
                };
                let end = read(&bytes[split..split + 8]);
                let start = read(&bytes[split + 8..]);
                Ok((&bytes[..split], start, end))
            }
            WindowType::Tumbling { size_ms } | WindowType::Hopping { size_ms, .. } => {
                let Some(split) = bytes.len().checked_sub(8) else {
                    return Err(EngineError::Serde(
                        "time-windowed key is shorter than 8 bytes".into(),
                    ));
                };
                let start = read(&bytes[split..]);
                Ok((&bytes[..split], start, start.saturating_add(size_ms)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigns_hopping_and_tumbling_windows() {
        let hopping = WindowType::Hopping {
            size_ms: 30_000,
            advance_ms: 10_000,
        };
        let starts = |w: WindowType, t: i64| w.windows_for(t).collect::<Vec<_>>();
        assert_eq!(starts(hopping, 10_009), vec![0, 10_000]);
        assert_eq!(starts(hopping, 35_000), vec![10_000, 20_000, 30_000]);
        assert_eq!(
            starts(WindowType::Tumbling { size_ms: 30_000 }, 89_999),
            vec![60_000]
        );
        assert_eq!(starts(WindowType::Session, 5), Vec::<i64>::new());
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let hopping = WindowType::Hopping {
            size_ms: 30_000,
            advance_ms: 10_000,
        };
        assert!(hopping.windows_for(i64::MAX).count() > 0);
        assert_eq!(
            WindowType::Tumbling { size_ms: 7 }
                .windows_for(i64::MIN)
                .count(),
            1
        );
    }

    #[test]
    fn windowed_keys_round_trip() {
        let session = WindowType::Session;
        let bytes = session.encode_key(b"k".to_vec(), 5, 9);
        assert_eq!(bytes.len(), 17);
        assert_eq!(session.decode_key(&bytes).unwrap(), (&b"k"[..], 5, 9));
        let tumbling = WindowType::Tumbling { size_ms: 10 };
        let bytes = tumbling.encode_key(b"k".to_vec(), 20, 30);
        assert_eq!(tumbling.decode_key(&bytes).unwrap(), (&b"k"[..], 20, 30));
        assert!(tumbling.decode_key(b"short").is_err());
    }
}
