//! TLS for the server: rustls with the ring provider, configured from a
//! PEM certificate chain and private key.
//!
//! [`serve_tls`] accepts TCP connections and runs each TLS handshake in a
//! task of its own (bounded in time), so a client that connects and says
//! nothing cannot hold up others; established connections are served by
//! axum like plain ones, HTTP/2 when the client negotiates `h2` by ALPN,
//! HTTP/1.1 otherwise.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::ServerError;

/// Longest a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for axum to take them.
const ACCEPT_QUEUE: usize = 128;

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what} {}: {e}", path.display()))
}

/// A rustls configuration serving the certificate chain in `cert` (PEM)
/// with the private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error("cannot read the certificate", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("cannot read the certificate", cert, e))?;
    if chain.is_empty() {
        return Err(tls_error(
            "no certificate in",
            cert,
            "expected PEM CERTIFICATE blocks",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_error("cannot read the private key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connections whose handshake has completed, as axum takes them.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task only ends with the process.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts TCP connections and hands the handshaken ones to `ready`.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, then retry.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves `router` over TLS on `listener` until the process ends.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
) -> Result<(), ServerError> {
    let local = listener.local_addr().map_err(ServerError::Bind)?;
    let (sender, ready) = mpsc::channel(ACCEPT_QUEUE);
    tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
    axum::serve(TlsListener { ready, local }, router)
        .await
        .map_err(ServerError::Serve)
}
