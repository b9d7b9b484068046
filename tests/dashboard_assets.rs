//! The dashboard's files over real HTTP: served without a token, with a
//! strict content security policy, nothing else from the source tree.

mod api_common;

use reqwest::StatusCode;

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_strict_policy() {
    let api = api_common::start(1).await;
    for (path, content_type, needle) in [
        ("/", "text/html", "<form id=\"signin-form\""),
        ("/dashboard/app.js", "text/javascript", "sessionStorage"),
        ("/dashboard/app.css", "text/css", "@media"),
        ("/dashboard/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let response = api
            .client
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {headers:?}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
        // Nothing from the internet.
        assert!(!body.contains("https://"), "{path} loads a remote asset");
    }
    for path in [
        "/dashboard/missing.js",
        "/dashboard/..%2Fmod.rs",
        "/dashboard/%2E%2E%2Fdashboard.rs",
        "/index.html/x",
    ] {
        let (status, body) = api.send(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"], "not_found", "{path}");
    }
}
