//! The fuzzed doors of simmask, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, a nightly toolchain and libFuzzer) and by the
//! bounded run in CI (`tests/fuzz_props.rs`, proptest on stable). Each takes
//! arbitrary bytes and must return: a panic, a hang or (for the API) a 5xx
//! is the finding.
//!
//! - [`pdu`]: the PDU decoder, over octets and over hex text, with and
//!   without the SMSC field, and the JSON it renders.
//! - [`at`]: the AT digester, all at once and byte by byte (they must
//!   agree), then every line parser over every line it yields.
//! - [`config`]: the configuration parser and its validation.
//! - [`api_body`]: every route of the OpenAPI document that takes a JSON
//!   body, given the bytes as its body by an admin, through the real router.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use simmask::modem::digest::{Digest, DigestState, digest, digest_all};
use simmask::modem::parse;

/// The PDU decoder: never panics, and what decodes renders as JSON.
pub fn pdu(data: &[u8]) {
    for with_smsc in [true, false] {
        if let Ok(decoded) = simmask::pdu::decode(data, with_smsc) {
            let _ = simmask::pdu::decoded_json(&decoded).to_string();
        }
        if let Ok(text) = std::str::from_utf8(data)
            && let Ok(decoded) = simmask::pdu::decode_hex(text, with_smsc)
        {
            let _ = simmask::pdu::decoded_json(&decoded).to_string();
        }
    }
}

/// Feeds `bytes` one at a time, as a slow serial port would.
fn byte_by_byte(bytes: &[u8], state: &DigestState) -> Vec<Digest> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for &b in bytes {
        buf.push(b);
        loop {
            let (found, used) = digest(&buf, state);
            buf.drain(..used);
            match found {
                Some(d) => out.push(d),
                None if used == 0 || buf.is_empty() => break,
                None => {}
            }
        }
    }
    out
}

/// The AT digester and the line parsers: never panic; byte by byte equals
/// all at once, in each state the driver puts it in.
pub fn at(data: &[u8]) {
    let states = [
        DigestState::default(),
        DigestState {
            command: Some("AT+CSQ".into()),
            response_prefix: Some("+CSQ:".into()),
            numeric_results: false,
        },
        DigestState {
            command: Some("AT".into()),
            response_prefix: None,
            numeric_results: true,
        },
    ];
    for state in &states {
        let (all, used) = digest_all(data, state);
        assert!(used <= data.len());
        assert_eq!(all, byte_by_byte(data, state), "state {state:?}");
        for digested in &all {
            match digested {
                Digest::Line(line) => lines(line),
                Digest::Urc(urc) => {
                    urc.iter().for_each(|line| lines(line));
                    let _ = simmask::modem::urc::parse_urc(urc);
                }
                _ => {}
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        text.lines().for_each(lines);
    }
}

/// Every parser the driver runs on a modem's line.
fn lines(line: &str) {
    let _ = parse::fields(line, "+CMGL:");
    let _ = parse::parse_cclk(line);
    let _ = parse::parse_csq(line);
    let _ = parse::parse_creg(line);
    let _ = parse::parse_cmti(line);
    let _ = parse::parse_cmgs(line);
    let _ = parse::parse_clcc(line);
    let _ = parse::parse_cpms(line);
    let _ = parse::parse_crsm(line);
    let _ = parse::parse_chld_test(line);
    let _ = parse::parse_cops(line);
    let _ = parse::parse_cnum(line);
    let _ = parse::parse_cpms_test(line);
    if let Ok(allowed) = parse::parse_cnmi_test(line) {
        let _ = parse::cnmi_allowed("2,1,0,2,0", &allowed);
    }
    let _ = simmask::modem::urc::parse_urc(&[line.to_string()]);
    let _ = simmask::modem::urc::parse_urc(&[line.to_string(), line.to_string()]);
}

/// The configuration parser: a precise error or a configuration, never a
/// panic.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = simmask::config::Config::parse(text, "fuzz.toml");
    }
}

/// The API over a store of its own, with two SIMs up.
struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    /// `(method, path)` of every route that takes a JSON body.
    routes: Vec<(axum::http::Method, String)>,
    _dir: tempfile::TempDir,
}

struct Pool(Vec<simmask::store::SimStatusRecord>);

impl simmask::api::PoolView for Pool {
    fn sim_statuses(&self) -> Vec<simmask::store::SimStatusRecord> {
        self.0.clone()
    }

    fn ussd(
        &self,
        _iccid: String,
        _code: String,
    ) -> futures::future::BoxFuture<'static, Result<String, String>> {
        Box::pin(async { Ok("Your balance is 4.20".into()) })
    }
}

const ADMIN: &str = "fuzz-admin-token";

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = simmask::store::Store::open(&dir.path().join("fuzz.db")).expect("store");
        let now = time::OffsetDateTime::now_utc();
        let mut statuses = Vec::new();
        runtime.block_on(async {
            for i in 0..2 {
                let imei = format!("35000000000000{i}");
                let iccid = format!("894400000000000000{i}");
                store
                    .upsert_modem(
                        simmask::store::ModemRecord {
                            imei: imei.clone(),
                            manufacturer: "SIMCOM".into(),
                            model: "SIM800L".into(),
                            revision: "1418B05".into(),
                            profile: "sim800".into(),
                            port: format!("/dev/ttyUSB{i}"),
                        },
                        now,
                    )
                    .await
                    .expect("modem");
                let msisdn =
                    simmask::number::PhoneNumber::from_e164(&format!("+44700900000{i}")).unwrap();
                store
                    .upsert_sim(iccid.clone(), msisdn, String::new(), Some(imei), now)
                    .await
                    .expect("sim");
                statuses.push(simmask::store::SimStatusRecord {
                    iccid,
                    state: "up".into(),
                    healthy: true,
                    signal_dbm: Some(-70),
                    registration: "home".into(),
                    roaming: false,
                    operator: "Virtual Mobile".into(),
                    voice_method: Some("transfer".into()),
                    port: format!("/dev/ttyUSB{i}"),
                    last_error: String::new(),
                    updated_at: now,
                });
            }
        });
        let mut state = simmask::api::ApiState::new(
            store,
            Arc::new(Pool(statuses)),
            simmask::events::EventBus::new(),
        );
        state.admin_token = Some(ADMIN.into());
        state.default_region = Some("GB".into());
        // Every input reaches its handler, none the rate limiter.
        state.rate_limit = simmask::api::limits::RateLimit {
            per_second: 1_000_000,
            burst: 1_000_000,
        };
        let document =
            serde_json::to_value(<simmask::api::ApiDoc as utoipa::OpenApi>::openapi()).unwrap();
        let mut routes = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                if operation.get("requestBody").is_some() {
                    routes.push((
                        method.to_uppercase().parse().expect("method"),
                        path.replace("{id}", "ses_missing")
                            .replace("{iccid}", "8944000000000000000"),
                    ));
                }
            }
        }
        assert!(routes.len() >= 5, "routes with a body: {routes:?}");
        Api {
            router: simmask::api::router(state),
            runtime,
            routes,
            _dir: dir,
        }
    })
}

/// Every route that takes a JSON body, given `data` as its body: the answer
/// is a 2xx or a JSON 4xx, never a 5xx.
pub fn api_body(data: &[u8]) {
    use tower::Service;

    let api = api();
    for (method, path) in &api.routes {
        let request = axum::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(data.to_vec()))
            .expect("request");
        let mut router = api.router.clone();
        let response = api
            .runtime
            .block_on(async move {
                type Request = axum::http::Request<axum::body::Body>;
                std::future::poll_fn(|cx| {
                    <axum::Router as Service<Request>>::poll_ready(&mut router, cx)
                })
                .await?;
                <axum::Router as Service<Request>>::call(&mut router, request).await
            })
            .unwrap_or_else(|never: std::convert::Infallible| match never {});
        let status = response.status();
        assert!(
            !status.is_server_error(),
            "{method} {path} with {:?}: {status}",
            String::from_utf8_lossy(data)
        );
        if status.is_client_error() {
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "{method} {path}: {status} is not JSON ({content_type})"
            );
        }
    }
}
