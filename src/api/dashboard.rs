//! The dashboard: plain HTML, CSS and JavaScript embedded in the binary
//! (`src/api/dashboard/`), served at `/` without a token. The page holds no
//! data: it asks for a token and reads everything through the API. Its
//! strings are in one catalogue per language (`lang/<code>.json`).

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

use super::error::ApiError;
use super::extract::ApiPath;

#[derive(RustEmbed)]
#[folder = "src/api/dashboard/"]
struct Assets;

/// Only our own files, no inline script, no framing: the page handles a
/// token and must not run anything else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's languages: a catalogue `lang/<code>.json` each.
pub const LANGUAGES: &[&str] = &["en", "fr", "es", "pt", "ar"];

/// `/`, `/dashboard/{file}` and `/dashboard/lang/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/dashboard/{file}",
            get(|ApiPath(file): ApiPath<String>| async move { asset(&file) }),
        )
        .route(
            "/dashboard/lang/{file}",
            get(|ApiPath(file): ApiPath<String>| async move { catalogue(&file) }),
        )
}

/// `lang/<code>.json` for a language the dashboard has.
fn catalogue(file: &str) -> Response {
    let known = file
        .strip_suffix(".json")
        .is_some_and(|code| LANGUAGES.contains(&code));
    if !known {
        return ApiError::not_found(format!(
            "no dashboard language {file} (there are {})",
            LANGUAGES.join(", ")
        ))
        .into_response();
    }
    asset(&format!("lang/{file}"))
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn asset(file: &str) -> Response {
    let Some(content) = Assets::get(file) else {
        return ApiError::not_found(format!("no dashboard file {file}")).into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(file))),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        content.data,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn catalogue(lang: &str) -> serde_json::Map<String, Value> {
        let file = Assets::get(&format!("lang/{lang}.json")).expect("a catalogue per language");
        match serde_json::from_slice(&file.data).expect("valid JSON") {
            Value::Object(map) => map,
            _ => panic!("{lang}: not an object"),
        }
    }

    fn placeholders(value: &Value) -> BTreeSet<String> {
        let texts: Vec<&str> = match value {
            Value::String(s) => vec![s.as_str()],
            Value::Object(forms) => forms.values().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        texts
            .iter()
            .flat_map(|text| text.split('{').skip(1))
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
            .collect()
    }

    /// Every language has every string, with the same placeholders, and a
    /// plural has its `other` form: no key is ever shown untranslated.
    #[test]
    fn every_catalogue_has_every_string_with_its_placeholders() {
        let english = catalogue("en");
        for lang in LANGUAGES {
            let strings = catalogue(lang);
            let keys: BTreeSet<&String> = strings.keys().collect();
            assert_eq!(
                keys,
                english.keys().collect(),
                "{lang}: keys differ from en"
            );
            for (key, value) in &strings {
                if let Value::Object(forms) = value {
                    assert!(forms.contains_key("other"), "{lang} {key}: no `other` form");
                }
                // A form may leave out {count} when its words say it ("one", "two").
                let mut expected = placeholders(&english[key]);
                let found = placeholders(value);
                expected.remove("count");
                assert!(
                    expected.is_subset(&found),
                    "{lang} {key}: placeholders {found:?}, English has {expected:?}"
                );
            }
        }
    }
}
