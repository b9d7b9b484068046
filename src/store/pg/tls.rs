//! How the fleet's database is reached: its url parsed once, for the pool,
//! the LISTEN connections and PostgreSQL's own tools alike, and TLS as
//! libpq means it, through rustls.
//!
//! The url's `sslmode` is libpq's: `disable` (never TLS), `prefer` (the
//! default: TLS when the server offers it, its certificate not checked),
//! `require` (TLS or no connection; the certificate checked against
//! `sslrootcert` when one is given, as libpq does), `verify-ca` (the
//! certificate must chain to `sslrootcert`) and `verify-full` (and name the
//! host connected to). `sslrootcert` is a PEM file of trusted certificates,
//! or `system` for the system's CAs. tokio-postgres knows neither the last
//! two modes nor `sslrootcert`: both are taken out of the url here, and
//! tokio-postgres is given `prefer`, `require` or `disable`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::redacted;
use crate::store::StoreError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries without TLS first: here it is `prefer`.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RootCert {
    File(PathBuf),
    System,
}

/// The url's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tls {
    pub(super) mode: SslMode,
    pub(super) root: Option<RootCert>,
}

/// `%XX` escapes of a url's query value decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `sslmode` and `sslrootcert` off a url (`postgres://…?…`) or a
/// `key=value` connection string: the rest for tokio-postgres, and the two.
pub(super) fn split_tls(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = Some(percent_decoded(value)),
                Some(("sslrootcert", value)) => root = Some(percent_decoded(value)),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, mode, root);
    }
    // key=value pairs, values optionally in single quotes with \ escapes.
    let mut kept = Vec::new();
    let mut chars = url.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    (kept.join(" "), mode, root)
}

/// `url` as a connection's configuration, its TLS settings, and the url as
/// it may be shown (no password).
pub(super) fn parse_with_tls(
    url: &str,
) -> Result<(tokio_postgres::Config, Tls, String), StoreError> {
    let shown = redacted(url);
    let bad = |why: String| StoreError::Unavailable(format!("{shown}: {why}"));
    let (rest, mode, root) = split_tls(url);
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|e| bad(format!("not a PostgreSQL url ({e})")))?;
    let mode = match mode.as_deref() {
        None => SslMode::Prefer,
        Some(text) => SslMode::parse(text).ok_or_else(|| {
            bad(format!(
                "sslmode={text} is none of disable, prefer, require, verify-ca, verify-full"
            ))
        })?,
    };
    let root = match root.as_deref() {
        None | Some("") => None,
        Some("system") => Some(RootCert::System),
        Some(path) => Some(RootCert::File(PathBuf::from(path))),
    };
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
        return Err(bad(format!(
            "sslmode={} needs sslrootcert=<PEM file of the CA> (or sslrootcert=system)",
            mode.as_str()
        )));
    }
    config.ssl_mode(match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if config.get_application_name().is_none() {
        config.application_name("simmask");
    }
    Ok((config, Tls { mode, root }, shown))
}

/// The trusted certificates of `root`.
fn roots(root: &RootCert) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root {
        RootCert::System => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err("sslrootcert=system: the system has no CA certificates".into());
            }
        }
        RootCert::File(path) => {
            let problem =
                |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|e| problem(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| problem(&e))?;
            if certificates.is_empty() {
                return Err(problem(&"no certificate in it"));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| problem(&e))?;
            }
        }
    }
    Ok(roots)
}

/// The rustls side of a connection with settings `tls`: what tokio-postgres
/// calls when the server agreed to TLS.
#[derive(Clone)]
pub(super) struct Connector {
    config: Arc<rustls::ClientConfig>,
    tls: Arc<Tls>,
}

impl Connector {
    pub(super) fn new(tls: &Tls) -> Result<Self, StoreError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&tls.root, tls.mode) {
            // libpq checks nothing without a root, whatever the mode asks
            // short of verify-ca (which needs one, see `parse_with_tls`).
            (None, _) => Arc::new(Unchecked {
                provider: provider.clone(),
            }),
            (Some(root), mode) => {
                let roots = Arc::new(roots(root).map_err(StoreError::Unavailable)?);
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| StoreError::Unavailable(format!("sslrootcert: {e}")))?;
                Arc::new(Chained {
                    webpki,
                    check_name: mode == SslMode::VerifyFull,
                })
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Unavailable(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            tls: Arc::new(tls.clone()),
        })
    }
}

/// The certificate chains to the trusted roots, and names the host when
/// `check_name` (verify-full; verify-ca and require with a root do not).
#[derive(Debug)]
struct Chained {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Chained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Any certificate (libpq's `prefer` and `require` without a root): the
/// link is encrypted, its other end not authenticated. The handshake's
/// signatures are still checked against the certificate presented.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
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

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = Handshake;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, std::io::Error> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host} is not a host name TLS can check ({e})"),
            )
        })?;
        Ok(Handshake {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name,
            tls: self.tls.clone(),
        })
    }
}

/// One connection's TLS handshake.
pub(super) struct Handshake {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    tls: Arc<Tls>,
}

impl<S> TlsConnect<S> for Handshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, std::io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let name = self.name.clone();
            match self.connector.connect(self.name, stream).await {
                Ok(stream) => Ok(RustlsStream(Box::new(stream))),
                Err(error) => {
                    let root = match &self.tls.root {
                        Some(RootCert::File(path)) => format!("sslrootcert={}", path.display()),
                        Some(RootCert::System) => "sslrootcert=system".into(),
                        None => "no sslrootcert".into(),
                    };
                    Err(std::io::Error::other(format!(
                        "TLS with {} (sslmode={}, {root}): {error}",
                        name.to_str(),
                        self.tls.mode.as_str(),
                    )))
                }
            }
        })
    }
}

/// A connection encrypted by rustls.
pub(super) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM's channel binding (tls-server-end-point) is not offered:
        // the server does not require it unless told to.
        ChannelBinding::none()
    }
}

/// One connection of its own (not from the pool), with the future that
/// drives it, TLS as the url says.
pub(super) async fn connect_url(
    url: &str,
) -> Result<
    (
        tokio_postgres::Client,
        impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    ),
    StoreError,
> {
    let (config, tls, shown) = parse_with_tls(url)?;
    let connector = Connector::new(&tls)?;
    config
        .connect(connector)
        .await
        .map_err(|e| StoreError::Unavailable(format!("{shown}: {}", explained(&e, &tls))))
}

/// A connection's error, with what the TLS settings make of it.
pub(super) fn explained(error: &tokio_postgres::Error, tls: &Tls) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    if text.contains("server does not support TLS") {
        return format!(
            "sslmode={} but the server does not offer TLS (ssl = off in its postgresql.conf?)",
            tls.mode.as_str()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_taken_out_of_both_url_forms() {
        let (rest, mode, root) = split_tls(
            "postgres://ops@db.lan:5433/fleet?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&connect_timeout=5",
        );
        assert_eq!(rest, "postgres://ops@db.lan:5433/fleet?connect_timeout=5");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca x.pem"));
        let (rest, mode, root) =
            split_tls("host=db.lan sslmode=require sslrootcert='/etc/my ca.pem' dbname=fleet");
        assert_eq!(rest, "host='db.lan' dbname='fleet'");
        assert_eq!(mode.as_deref(), Some("require"));
        assert_eq!(root.as_deref(), Some("/etc/my ca.pem"));
        assert_eq!(
            split_tls("postgres://ops@db/fleet"),
            ("postgres://ops@db/fleet".to_string(), None, None)
        );
    }

    #[test]
    fn modes_are_libpqs_and_verifying_needs_a_root() {
        let parsed = |url: &str| parse_with_tls(url).map(|(_, tls, _)| tls);
        assert_eq!(
            parsed("postgres://u@h/db").unwrap(),
            Tls {
                mode: SslMode::Prefer,
                root: None
            }
        );
        assert_eq!(
            parsed("postgres://u@h/db?sslmode=verify-ca&sslrootcert=system").unwrap(),
            Tls {
                mode: SslMode::VerifyCa,
                root: Some(RootCert::System)
            }
        );
        let refused = parsed("postgres://u:pw@h/db?sslmode=verify-full").unwrap_err();
        assert!(
            refused.to_string().contains("needs sslrootcert"),
            "{refused}"
        );
        assert!(!refused.to_string().contains("pw"), "{refused}");
        let (config, tls, shown) =
            parse_with_tls("host=db.lan user=ops password='p w\\'x' dbname=fleet sslmode=require")
                .unwrap();
        assert_eq!(config.get_password(), Some(&b"p w'x"[..]));
        assert_eq!(config.get_dbname(), Some("fleet"));
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(shown, "postgres://ops@db.lan/fleet");
        let refused = parsed("postgres://u@h/db?sslmode=always").unwrap_err();
        assert!(
            refused.to_string().contains("sslmode=always is none of"),
            "{refused}"
        );
    }
}
