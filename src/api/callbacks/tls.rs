//! HTTP clients for callbacks: rustls with the system's CAs (and the
//! configured `ca_file`), or, for a receiver whose self-signed certificate
//! the operator pinned by fingerprint, a client that trusts exactly that
//! certificate and nothing else.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::config::{CallbacksConfig, parse_fingerprint};

/// The client for receivers verified the usual way: the system's CAs and
/// the configured `ca_file`.
pub fn standard_client(config: &CallbacksConfig) -> Result<reqwest::Client, String> {
    let mut builder = super::network::client_builder(config);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(|e| e.to_string())
}

/// A client that accepts only the certificate with this SHA-256
/// fingerprint (a home server's self-signed one).
pub fn pinned_client(
    config: &CallbacksConfig,
    fingerprint: &str,
) -> Result<reqwest::Client, String> {
    let fingerprint = parse_fingerprint(fingerprint)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint,
            provider,
        }))
        .with_no_client_auth();
    super::network::client_builder(config)
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| e.to_string())
}

/// Trusts the one certificate whose DER hashes to `fingerprint`. The
/// handshake's signatures are still checked against it, so only the holder
/// of its private key gets through.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = sha2::Sha256::digest(end_entity.as_ref());
        if bool::from(digest.as_slice().ct_eq(&self.fingerprint)) {
            Ok(ServerCertVerified::assertion())
        } else {
            let seen: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            Err(rustls::Error::General(format!(
                "the receiver's certificate (sha256 {seen}) is not the pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
