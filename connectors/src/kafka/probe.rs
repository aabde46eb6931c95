//! Whether the broker supports Kafka transactions, from the API versions
//! it advertises.
//!
//! librdkafka does not expose what a broker advertises, so the probe asks
//! itself: one `ApiVersions` request (version 0, which every broker
//! answers) over a plain TCP connection to a bootstrap server. A
//! transactional producer needs five requests; a broker lacking any of
//! them cannot commit a transaction. Listeners behind TLS or SASL are not
//! probed: their support is reported as unknown.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use sluice_engine::topic::TransactionSupport;

use super::KafkaConfig;

/// The requests a transactional producer sends, by API key.
const TRANSACTION_APIS: [(i16, &str); 5] = [
    (22, "InitProducerId"),
    (24, "AddPartitionsToTxn"),
    (25, "AddOffsetsToTxn"),
    (26, "EndTxn"),
    (28, "TxnOffsetCommit"),
];

const API_VERSIONS: i16 = 18;
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the brokers of `config` support.
pub fn transaction_support(config: &KafkaConfig) -> TransactionSupport {
    let protocol = config
        .properties
        .iter()
        .find(|(k, _)| k == "security.protocol")
        .map(|(_, v)| v.to_ascii_lowercase());
    if let Some(protocol) = protocol.filter(|p| p != "plaintext") {
        return TransactionSupport::Unknown(format!(
            "the broker's API versions are not probed over {protocol}"
        ));
    }
    let mut last_error = String::from("no bootstrap server");
    for server in config.bootstrap_servers.split(',') {
        match api_keys(server.trim()) {
            Ok(keys) => return judge(&keys),
            Err(e) => last_error = format!("{server}: {e}"),
        }
    }
    TransactionSupport::Unknown(format!(
        "asking the broker for its API versions failed ({last_error})"
    ))
}

/// Supported when every transactional request is advertised.
fn judge(keys: &[i16]) -> TransactionSupport {
    let missing: Vec<String> = TRANSACTION_APIS
        .iter()
        .filter(|(key, _)| !keys.contains(key))
        .map(|(key, name)| format!("{name} (API key {key})"))
        .collect();
    if missing.is_empty() {
        TransactionSupport::Supported
    } else {
        TransactionSupport::Unsupported(format!(
            "the broker does not advertise {}",
            missing.join(", ")
        ))
    }
}

/// The API keys `server` (`host:port`) advertises.
fn api_keys(server: &str) -> Result<Vec<i16>, String> {
    let address = server
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the name resolves to no address")?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&request(1))
        .map_err(|e| format!("sending ApiVersions: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("reading ApiVersions: {e}"))?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| "a negative size")?;
    if size > 1 << 20 {
        return Err(format!("an ApiVersions response of {size} bytes"));
    }
    let mut body = vec![0u8; size];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("reading ApiVersions: {e}"))?;
    parse(&body, 1)
}

/// An `ApiVersions` v0 request with its size prefix: header v1 (key,
/// version, correlation id, client id), then an empty body.
fn request(correlation: i32) -> Vec<u8> {
    let client = b"sluice-probe";
    let mut frame = Vec::with_capacity(4 + 10 + client.len());
    let size = 2 + 2 + 4 + 2 + client.len();
    frame.extend_from_slice(&(size as i32).to_be_bytes());
    frame.extend_from_slice(&API_VERSIONS.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&correlation.to_be_bytes());
    frame.extend_from_slice(&(client.len() as i16).to_be_bytes());
    frame.extend_from_slice(client);
    frame
}

/// The API keys of an `ApiVersions` v0 response (without its size):
/// correlation id, error code, then `[key, min, max]` triples.
fn parse(body: &[u8], correlation: i32) -> Result<Vec<i16>, String> {
    let i32_at = |at: usize| -> Result<i32, String> {
        body.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
            .ok_or_else(|| "a truncated ApiVersions response".to_string())
    };
    let i16_at = |at: usize| -> Result<i16, String> {
        body.get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(i16::from_be_bytes)
            .ok_or_else(|| "a truncated ApiVersions response".to_string())
    };
    if i32_at(0)? != correlation {
        return Err("an ApiVersions response to another request".into());
    }
    let error = i16_at(4)?;
    if error != 0 {
        return Err(format!("ApiVersions failed with error code {error}"));
    }
    let count = usize::try_from(i32_at(6)?).map_err(|_| "a negative API count")?;
    (0..count).map(|i| i16_at(10 + 6 * i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(keys: &[i16]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(keys.len() as i32).to_be_bytes());
        for key in keys {
            body.extend_from_slice(&key.to_be_bytes());
            body.extend_from_slice(&0i16.to_be_bytes());
            body.extend_from_slice(&3i16.to_be_bytes());
        }
        body
    }

    #[test]
    fn a_response_lists_its_api_keys() {
        assert_eq!(parse(&response(&[0, 18, 26]), 1), Ok(vec![0, 18, 26]));
        assert!(parse(&response(&[0, 18])[..12], 1).is_err());
        assert!(parse(&response(&[0]), 2).is_err());
    }

    #[test]
    fn every_transactional_request_is_needed() {
        assert_eq!(
            judge(&[0, 1, 22, 24, 25, 26, 28]),
            TransactionSupport::Supported
        );
        assert_eq!(
            judge(&[0, 1, 22, 24, 25, 28]),
            TransactionSupport::Unsupported(
                "the broker does not advertise EndTxn (API key 26)".into()
            )
        );
    }

    #[test]
    fn tls_listeners_are_not_probed() {
        let mut config = KafkaConfig::new("127.0.0.1:1");
        config
            .properties
            .push(("security.protocol".into(), "SASL_SSL".into()));
        assert!(matches!(
            transaction_support(&config),
            TransactionSupport::Unknown(_)
        ));
    }
}
