//! TLS for the generator's connections: one rustls client configuration
//! per run, shared by every connection and thread (so a session one
//! connection was given can resume another's), and the server name each
//! handshake asks for.
//!
//! - Roots: `--cacert FILE` (PEM), else the system's bundle; `--insecure`
//!   accepts any certificate (the handshake's signatures are still
//!   checked, so the keys are real, only not vouched for).
//! - SNI: the target's host name; an IP address is sent as none and
//!   checked against the certificate's IP addresses.
//! - Resumption: rustls's in-memory session store (TLS 1.3 tickets, TLS
//!   1.2 session IDs and tickets), unless `--no-resume`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::cli::TlsOpts;
use super::kind;

/// Where Debian (and most Linux distributions) keep the trusted roots.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Sessions kept for resumption (rustls's default size).
const SESSIONS: usize = 256;

/// What a TLS connection of this run needs: the configuration and the
/// name to ask for.
#[derive(Clone, Debug)]
pub struct Tls {
    /// Shared by every connection: roots, ALPN, the session store.
    pub config: Arc<ClientConfig>,
    /// SNI and the name the certificate must carry.
    pub name: ServerName<'static>,
}

impl Tls {
    /// The configuration `opts` describe for server `host` (a name or an
    /// IP address, without brackets or port), offering `alpn`.
    pub fn new(opts: &TlsOpts, host: &str, alpn: &[&[u8]]) -> crate::Result<Tls> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| kind::config(format!("'{host}' is not a TLS server name: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| kind::config(format!("tls: {e}")))?;
        let mut config = if opts.insecure {
            let any = AnyCertificate(provider.signature_verification_algorithms);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(any))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(opts.cacert.as_deref())?)
                .with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption = if opts.no_resume {
            rustls::client::Resumption::disabled()
        } else {
            rustls::client::Resumption::in_memory_sessions(SESSIONS)
        };
        let config = Arc::new(config);
        // The first connection made pays the crypto library's one-time
        // setup (tens of ms here): paid now, no handshake counts it.
        rustls::ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| kind::config(format!("tls: {e}")))?;
        Ok(Tls { config, name })
    }
}

/// The trusted roots: `cacert`'s certificates, or the system bundle's.
fn roots(cacert: Option<&Path>) -> crate::Result<RootCertStore> {
    let path = cacert.unwrap_or(Path::new(SYSTEM_BUNDLE));
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|e| {
            kind::config(format!(
                "tls: cannot read {shown}: {e} (try --cacert or --insecure)"
            ))
        })?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(kind::config(format!(
            "tls: no usable certificate in {shown}"
        )));
    }
    Ok(store)
}

/// `--insecure`: every certificate is accepted; the handshake's
/// signatures are verified with the provider's algorithms all the same.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
