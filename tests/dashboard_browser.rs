//! The dashboard in a real browser: Debian's `chromium`, driven headless
//! through `chromedriver` (WebDriver, with fantoccini). A missing browser
//! fails the test (`scripts/test` installs `chromium chromium-driver`).
//! Every test fails on any SEVERE entry of the browser's console log (a
//! JavaScript error, a failed request), and leaves screenshots in
//! `target/artifacts/`.

#[path = "api_common/mod.rs"]
mod api_common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use simmask::events::Event;
use simmask::number::PhoneNumber;
use simmask::store::NewOutbound;
use time::OffsetDateTime;

/// How long the page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver and a headless chromium session; both end on drop.
struct Browser {
    client: Option<Client>,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A desktop browser window, or with `phone` a 375 px wide phone screen
/// (emulated: headless windows have a larger minimum width).
async fn browser(width: u32, height: u32, phone: bool) -> Browser {
    browser_in(width, height, phone, None).await
}

/// A browser whose language is `lang` (`--lang`, and the languages it
/// asks pages for), as a person's set to French or Arabic would be.
async fn browser_in(width: u32, height: u32, phone: bool, lang: Option<&str>) -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed: apt-get install chromium chromium-driver");
    let mut browser = Browser {
        client: None,
        driver,
    };
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}")],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let mut capabilities = capabilities.as_object().unwrap().clone();
    if let Some(lang) = lang {
        let options = &mut capabilities["goog:chromeOptions"];
        options["args"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("--lang={lang}")));
        options["prefs"] = json!({"intl.accept_languages": lang});
    }
    if phone {
        capabilities["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true},
        });
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let client = loop {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities.clone());
        match builder.connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => break client,
            Err(error) if tokio::time::Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("chromedriver on port {port}: {error}"),
        }
    };
    browser.client = Some(client);
    browser
}

/// `url::ParseError`, named through reqwest's re-export of `Url`.
type UrlError = <reqwest::Url as std::str::FromStr>::Err;

/// `POST /session/{id}/se/log`: chromedriver's console log, drained.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, UrlError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

impl Browser {
    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client()
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} never appeared: {error}"))
    }

    /// The text and `data-session` of the first match, read in one script
    /// run so a live redraw between two WebDriver calls cannot stale them.
    async fn text_and_session(&self, css: &str) -> (String, String) {
        let found = self
            .client()
            .execute(
                "const e = document.querySelector(arguments[0]);\
                 return e ? [e.innerText, e.dataset.session || ''] : null;",
                vec![json!(css)],
            )
            .await
            .unwrap();
        let pair = found.as_array().unwrap_or_else(|| panic!("{css} is gone"));
        (
            pair[0].as_str().unwrap_or_default().to_string(),
            pair[1].as_str().unwrap_or_default().to_string(),
        )
    }

    async fn count(&self, css: &str) -> usize {
        self.client()
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .len()
    }

    async fn wait_for_count(&self, css: &str, at_least: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.count(css).await < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css}: fewer than {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the element, finding it again if the page re-rendered it
    /// between finding and clicking (the lists redraw on live events), as a
    /// person would simply click again.
    async fn click(&self, css: &str) {
        for _ in 0..5 {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(CmdError::Standard(error))
                    if error.error == ErrorStatus::StaleElementReference =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{css}: {error}"),
            }
        }
        panic!("{css}: replaced by every redraw, five times over");
    }

    /// Fails on any SEVERE console entry since the last call.
    async fn assert_clean_console(&self) {
        let log = self.client().issue_cmd(BrowserLog).await.unwrap();
        let severe: Vec<&Value> = log
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect();
        assert!(severe.is_empty(), "the page logged errors: {severe:#?}");
    }

    async fn screenshot(&self, name: &str) {
        self.client()
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .unwrap();
        let png = self.client().screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }

    /// The page fits the window's width (no sideways scrolling).
    async fn assert_fits_width(&self) {
        let overflow = self
            .client()
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{overflow} px wider than the window"
        );
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

/// A busy bank for the in-process server: SIMs in every state, traffic.
async fn make_busy(api: &api_common::Api) {
    {
        let mut statuses = api.pool.statuses.lock().unwrap();
        statuses[1].signal_dbm = Some(-97);
        statuses[2].state = "unplugged".into();
        statuses[2].healthy = false;
        statuses[2].signal_dbm = None;
        statuses[2].registration = String::new();
        statuses[2].last_error = "port vanished: /dev/ttyUSB2".into();
        statuses[3].registration = "roaming".into();
        statuses[3].signal_dbm = Some(-109);
    }
    api.store
        .set_sim_enabled(
            api_common::iccid(4),
            false,
            "test".into(),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    for hour in 0..24 {
        for n in 0..(hour % 5) {
            let at = now - time::Duration::hours(hour);
            let outbox = api
                .store
                .queue_sms(
                    NewOutbound {
                        session_id: None,
                        proxy_iccid: api_common::iccid((hour as usize + n as usize) % 2),
                        from_position: None,
                        to: PhoneNumber::from_e164("+447911000099").unwrap(),
                        body: "traffic".into(),
                    },
                    at,
                )
                .await
                .unwrap();
            api.store.mark_sent(outbox, vec![1], at).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_opens_sees_live_events_and_closes() {
    let api = api_common::start(6).await;
    make_busy(&api).await;
    let browser = browser(1280, 1000, false).await;
    browser.client().goto(&api.base).await.unwrap();

    browser.fill("#token", &api.admin).await;
    browser.click("#signin-form button[type=submit]").await;
    browser.wait_for_count(".card.sim", 6).await;
    browser.wait_for_count(".card.sim svg.chart", 6).await;
    assert_eq!(browser.count(".card.sim.unhealthy").await, 1);
    browser.wait_for("#live.on").await;

    browser.fill("#participant-a", "+447911000001").await;
    browser.fill("#participant-b", "07911 000002").await;
    browser.fill("#label", "ride 4521").await;
    browser.fill("#ttl", "30").await;
    browser.click("#open-form button[type=submit]").await;
    let open_row = "#session-list li[data-status=open]";
    browser.wait_for(open_row).await;
    let (text, session_id) = browser.text_and_session(open_row).await;
    assert!(text.contains("ride 4521"), "{text}");
    assert!(
        text.contains("+447911000002"),
        "admins see real numbers: {text}"
    );
    browser
        .wait_for("#feed-list li[data-kind=session_opened]")
        .await;

    // A relayed message reaches the feed live.
    api.events.publish(Event::MessageRelayed {
        session_id: Some(session_id.clone()),
        interaction_id: 7,
        parts: 2,
    });
    let relayed = browser
        .wait_for("#feed-list li[data-kind=message_relayed]")
        .await;
    assert!(relayed.text().await.unwrap().contains(&session_id));
    browser.screenshot("dashboard-desktop.png").await;

    browser
        .click("#session-list li[data-status=open] .show-interactions")
        .await;
    browser.wait_for("#session-list .interactions li").await;

    browser
        .click("#session-list li[data-status=open] .close-session")
        .await;
    browser
        .wait_for("#session-list li[data-status=closed]")
        .await;
    browser
        .wait_for("#feed-list li[data-kind=session_closed]")
        .await;
    assert_eq!(browser.count("#session-list li[data-status=open]").await, 0);

    // Search by label.
    browser.fill("#search-label", "nothing like it").await;
    browser.click("#search-form button[type=submit]").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.count("#session-list li[data-session]").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the search kept the session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.assert_clean_console().await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_see_masked_numbers_and_no_admin_controls_on_a_phone() {
    let api = api_common::start(6).await;
    make_busy(&api).await;
    let (status, _) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(json!({"participants": ["+447911000001", "+447911000002"], "label": "parcel 9"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let browser = browser(375, 812, true).await;
    browser.client().goto(&api.base).await.unwrap();
    browser.fill("#token", &api.viewer).await;
    browser.click("#signin-form button[type=submit]").await;
    let session = browser.wait_for("#session-list li[data-status=open]").await;
    let text = session.text().await.unwrap();
    assert!(text.contains("+44*******001"), "{text}");
    assert!(!text.contains("7911000001"), "{text}");
    assert_eq!(browser.count(".close-session").await, 0);
    let open_form = browser.wait_for("#open-form").await;
    assert!(!open_form.is_displayed().await.unwrap());
    browser.wait_for_count(".card.sim svg.chart", 6).await;
    browser.assert_fits_width().await;
    browser.screenshot("dashboard-phone-viewer.png").await;

    // A reload keeps the tab signed in; signing out forgets the token.
    browser.client().refresh().await.unwrap();
    browser.wait_for("#session-list li[data-status=open]").await;
    browser.click("#signout").await;
    browser.wait_for("#signin-form").await;
    let stored = browser
        .client()
        .execute("return sessionStorage.getItem('simmask.token');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, Value::Null);
    browser.assert_clean_console().await;
    browser.close().await;
}
/// `simmask demo` as a process: the whole appliance on a virtual bank.
struct Demo {
    child: Child,
    dashboard: String,
    api: String,
    sim_control: String,
    token: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGINT lets the demo remove its temporary data; kill if it hangs.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo and reads its URLs and token from its first line.
fn start_demo(modems: usize) -> Demo {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_simmask"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--modems",
            &modems.to_string(),
        ])
        .env_remove("SIMMASK_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simmask demo starts");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    // Keep reading (and dropping) the rest so the demo never blocks on stdout.
    std::thread::spawn(move || for _ in reader.lines() {});
    let first: Value = serde_json::from_str(&line)
        .unwrap_or_else(|error| panic!("the demo's first line {line:?}: {error}"));
    let text = |key: &str| {
        first[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {first}"))
            .to_string()
    };
    Demo {
        dashboard: text("dashboard"),
        api: text("api"),
        sim_control: text("sim_control"),
        token: text("admin_token"),
        child,
    }
}

impl Demo {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// A phone outside the bank sends an SMS (simulator control API).
    async fn handset_sms(&self, from: &str, to: &str, text: &str) {
        let response = reqwest::Client::new()
            .post(format!("{}/handsets/{from}/sms", self.sim_control))
            .json(&json!({"to": to, "text": text}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    async fn wait_healthy(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let numbers = self.api(reqwest::Method::GET, "/numbers", None).await;
            let healthy = numbers
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["healthy"] == true)
                .count();
            if healthy >= count {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{numbers}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_relays_a_message_live_into_the_dashboard() {
    let demo = start_demo(4);
    demo.wait_healthy(4).await;
    // The network's clock two hours ahead of this machine's: the modems
    // tell the daemon at their next poll.
    let response = reqwest::Client::new()
        .put(format!("{}/clock", demo.sim_control))
        .json(&json!({"offset_seconds": 7200}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let clock = loop {
        let health = demo.api(reqwest::Method::GET, "/healthz", None).await;
        let offset = health["clock"]["offset_seconds"].as_i64();
        if offset.is_some_and(|o| (o + 7200).abs() <= 5) {
            break health["clock"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let browser = browser(1280, 1400, false).await;
    browser.client().goto(&demo.dashboard).await.unwrap();
    browser.fill("#token", &demo.token).await;
    browser.click("#signin-form button[type=submit]").await;
    browser.wait_for_count(".card.sim", 4).await;
    browser.wait_for("#live.on").await;
    // The dashboard's clock line says so, red when the clock is suspect
    // (not while timesyncd vouches for it).
    let line = if clock["suspect"] == true {
        browser.wait_for("#clock.bad").await
    } else {
        browser.wait_for("#clock").await
    };
    let text = line.text().await.unwrap();
    assert!(
        text.starts_with("Clock: ")
            && (text.contains("2 h 0 min behind") || text.contains("1 h 59 min behind"))
            && text.contains("the network's time (cclk via sim "),
        "{text}"
    );

    let (a, b) = ("+447911123456", "+447912345678");
    browser.fill("#participant-a", a).await;
    browser.fill("#participant-b", b).await;
    browser.fill("#label", "ride demo").await;
    // SMS only: the demo's virtual SIMs may not bridge calls.
    browser.click("#mode option[value=sms]").await;
    browser.click("#open-form button[type=submit]").await;
    let open_row = "#session-list li[data-status=open]";
    browser.wait_for(open_row).await;
    let (_, id) = browser.text_and_session(open_row).await;
    let session = demo
        .api(reqwest::Method::GET, &format!("/sessions/{id}"), None)
        .await;
    let proxy = session["proxy_number"].as_str().unwrap().to_string();

    // A texts the proxy; the relay sends it on to B, and the feed shows it.
    demo.handset_sms(a, &proxy, "hello from A").await;
    browser
        .wait_for("#feed-list li[data-kind=message_relayed]")
        .await;

    // A busier bank for the screenshot: more sessions and traffic.
    for (n, label) in ["parcel 17", "ride 9002", "visit 3"].iter().enumerate() {
        let (x, y) = (format!("+44791100010{n}"), format!("+44791100020{n}"));
        let other = demo
            .api(
                reqwest::Method::POST,
                "/sessions",
                Some(json!({"participants": [x, y], "label": label, "mode": "sms"})),
            )
            .await;
        let via = other["proxy_number"].as_str().unwrap();
        demo.handset_sms(&x, via, "on my way").await;
        demo.handset_sms(&y, via, "see you").await;
    }
    browser
        .wait_for_count("#feed-list li[data-kind=message_relayed]", 3)
        .await;
    browser
        .wait_for_count("#session-list li[data-status=open]", 4)
        .await;
    browser
        .click(&format!(
            "#session-list li[data-session='{id}'] .show-interactions"
        ))
        .await;
    browser
        .wait_for(&format!(
            "#session-list li[data-session='{id}'] .interactions li.interaction"
        ))
        .await;
    browser.screenshot("demo-busy-bank.png").await;

    browser
        .click(&format!(
            "#session-list li[data-session='{id}'] .close-session"
        ))
        .await;
    browser
        .wait_for(&format!(
            "#session-list li[data-session='{id}'][data-status=closed]"
        ))
        .await;
    browser
        .wait_for("#feed-list li[data-kind=session_closed]")
        .await;
    browser.assert_clean_console().await;
    browser.close().await;
}

impl Demo {
    /// A handset acts on its phone (simulator control API).
    async fn handset(&self, number: &str, action: &str, body: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/handsets/{number}/{action}", self.sim_control))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{action}: {}",
            response.status()
        );
    }

    /// Waits until a handset's call satisfies `check`.
    async fn wait_handset(&self, number: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let call: Value = reqwest::Client::new()
                .get(format!("{}/handsets/{number}/call", self.sim_control))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if check(&call) {
                return call;
            }
            assert!(tokio::time::Instant::now() < deadline, "{number}: {call}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_ends_a_call_from_the_dashboard() {
    let demo = start_demo(4);
    demo.wait_healthy(4).await;
    let browser = browser(1280, 1000, false).await;
    browser.client().goto(&demo.dashboard).await.unwrap();
    browser.fill("#token", &demo.token).await;
    browser.click("#signin-form button[type=submit]").await;
    browser.wait_for("#live.on").await;

    let (a, b) = ("+447911123456", "+447912345678");
    let session = demo
        .api(
            reqwest::Method::POST,
            "/sessions",
            Some(json!({"participants": [a, b], "mode": "voice", "label": "call demo"})),
        )
        .await;
    let id = session["id"].as_str().unwrap().to_string();
    let proxy = session["proxy_number"].as_str().unwrap().to_string();
    demo.handset(a, "dial", json!({"to": proxy})).await;
    demo.wait_handset(b, |c| c["state"] == "ringing").await;
    demo.handset(b, "answer", json!({})).await;

    // The bridge's live event redraws the list: the session shows its call.
    let row = format!("#session-list li[data-session='{id}']");
    browser
        .wait_for(&format!("{row} .call[data-call-state=bridged]"))
        .await;
    browser.screenshot("call-in-progress.png").await;
    browser.click(&format!("{row} .end-call")).await;
    for number in [a, b] {
        let call = demo.wait_handset(number, |c| c["state"] == "idle").await;
        assert_eq!(call["last_end"], "remote_hung_up", "{number}: {call}");
    }
    browser
        .wait_for("#feed-list li[data-kind=call_ended]")
        .await;
    let calls = demo
        .api(
            reqwest::Method::GET,
            &format!("/sessions/{id}/interactions"),
            None,
        )
        .await;
    assert_eq!(calls[0]["outcome"], "ended_by_operator", "{calls}");
    // Redrawn without the call, and its history says why it ended.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.count(&format!("{row} .call")).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call stays shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.click(&format!("{row} .show-interactions")).await;
    browser
        .wait_for(&format!("{row} .interactions li.interaction"))
        .await;
    let (text, _) = browser
        .text_and_session(&format!("{row} .interactions li.interaction"))
        .await;
    assert!(text.contains("ended by the operator"), "{text}");
    browser.assert_clean_console().await;
    browser.close().await;
}

/// The catalogue of `lang`, as the binary serves it.
fn catalogue(lang: &str) -> serde_json::Map<String, Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("src/api/dashboard/lang/{lang}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_speaks_the_browsers_language_and_arabic_right_to_left() {
    let api = api_common::start(6).await;
    make_busy(&api).await;
    let (status, session) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(json!({"participants": ["+447911000001", "+447911000002"], "label": "ride 12"})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{session}");
    let english = catalogue("en");
    for (lang, dir) in [("fr", "ltr"), ("ar", "rtl")] {
        let strings = catalogue(lang);
        let browser = browser_in(1280, 1000, false, Some(lang)).await;
        browser.client().goto(&api.base).await.unwrap();
        // Chosen from the browser's language, with no switch touched.
        let heading = browser.wait_for("#signin h2").await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while heading.text().await.unwrap() != strings["signin.title"] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{lang}: sign-in heading never translated"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = browser
            .client()
            .execute(
                "return [document.documentElement.lang, document.documentElement.dir, \
                 getComputedStyle(document.body).direction];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(page, json!([lang, dir, dir]), "{lang}");

        browser.fill("#token", &api.admin).await;
        browser.click("#signin-form button[type=submit]").await;
        browser.wait_for_count(".card.sim svg.chart", 6).await;
        browser.wait_for("#session-list li[data-status=open]").await;
        browser.wait_for("#live.on").await;
        api.events.publish(Event::MessageRelayed {
            session_id: Some(session["id"].as_str().unwrap().into()),
            interaction_id: 7,
            parts: 2,
        });
        browser
            .wait_for("#feed-list li[data-kind=message_relayed]")
            .await;
        browser
            .click("#session-list li[data-status=open] .show-interactions")
            .await;
        browser.wait_for("#session-list .interactions li").await;
        browser.screenshot(&format!("dashboard-{lang}.png")).await;

        let text = browser
            .client()
            .execute("return document.body.innerText;", vec![])
            .await
            .unwrap();
        let text = text.as_str().unwrap();
        // No catalogue key shows, and no English where this language has
        // its own words.
        for key in english.keys() {
            assert!(
                !text.contains(key.as_str()),
                "{lang}: key {key} visible:\n{text}"
            );
        }
        for key in [
            "top.signout",
            "open.submit",
            "activity.title",
            "export.download",
            "sim.disable",
            "session.interactions",
            "reg.roaming",
            "hubs.title",
            "hubs.create",
        ] {
            let native = strings[key].as_str().unwrap();
            let foreign = english[key].as_str().unwrap();
            assert!(
                text.contains(native),
                "{lang}: {native:?} ({key}) missing:\n{text}"
            );
            assert!(
                !text.contains(foreign),
                "{lang}: English {foreign:?} ({key}) visible:\n{text}"
            );
        }
        // Phone numbers still read left to right inside right-to-left text.
        let numbers = browser
            .client()
            .execute(
                "return Array.from(document.querySelectorAll('#session-list bdi.ltr'))\
                 .map((e) => [e.textContent, getComputedStyle(e).direction]);",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            numbers
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n == &json!(["+447911000001", "ltr"])),
            "{lang}: {numbers}"
        );
        browser.assert_fits_width().await;
        browser.assert_clean_console().await;

        // The switch takes the page to English and back, data included.
        browser.click("#lang option[value=en]").await;
        browser.wait_for_count(".card.sim svg.chart", 6).await;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let dir_now = browser
                .client()
                .execute("return [document.documentElement.dir, document.querySelector('#signout').textContent];", vec![])
                .await
                .unwrap();
            if dir_now == json!(["ltr", "Sign out"]) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{lang}: no switch to English: {dir_now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        browser.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reserves_drains_releases_and_reopens_and_sees_the_budgets() {
    use simmask::masking::allocation::PoolLimits;
    let api = api_common::start_configured(2, |state| {
        state.limits = PoolLimits {
            per_day: Some(1000),
            recipients_per_month: Some(100),
            ..PoolLimits::default()
        };
    })
    .await;
    let browser = browser(1280, 1000, false).await;
    browser.client().goto(&api.base).await.unwrap();
    browser.fill("#token", &api.admin).await;
    browser.click("#signin-form button[type=submit]").await;
    browser.wait_for_count(".card.sim", 2).await;
    let card = format!(".card.sim[data-iccid='{}']", api_common::iccid(0));
    let budgets = browser
        .wait_for(&format!("{card} .budgets"))
        .await
        .text()
        .await
        .unwrap();
    // Numbers in the locale (the browser is English here).
    assert!(budgets.contains("today 0 / 1,000"), "{budgets}");
    assert!(
        budgets.contains("recipients this month 0 / 100"),
        "{budgets}"
    );

    // Reserve: the number travels in the PUT body, never in a URL.
    browser
        .fill(&format!("{card} form.reserve input"), "07911 000001")
        .await;
    browser
        .click(&format!("{card} form.reserve button[type=submit]"))
        .await;
    browser.wait_for(&format!("{card} .badge.reserved")).await;
    let owner = browser
        .wait_for(&format!("{card} .reserved-for"))
        .await
        .text()
        .await
        .unwrap();
    assert!(owner.contains("+447911000001"), "{owner}");
    browser.click(&format!("{card} button.drain")).await;
    browser.wait_for(&format!("{card} .badge.draining")).await;
    let (_, numbers) = api
        .send(
            reqwest::Method::GET,
            "/api/v1/numbers",
            Some(&api.admin),
            None,
        )
        .await;
    assert_eq!(numbers[0]["draining"], true);
    assert_eq!(numbers[0]["reserved_for"], "+447911000001");
    browser.click(&format!("{card} button.release")).await;
    browser.wait_for(&format!("{card} form.reserve")).await;
    browser.click(&format!("{card} button.drain")).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.count(&format!("{card} .badge.draining")).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still draining");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A closed session shows why, and reopens from its row.
    let (_, session) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/sessions",
            Some(&api.admin),
            Some(json!({"participants": ["+447911000001", "+447911000002"], "label": "case 9"})),
        )
        .await;
    let id = session["id"].as_str().unwrap();
    api.send(
        reqwest::Method::DELETE,
        &format!("/api/v1/sessions/{id}"),
        Some(&api.admin),
        None,
    )
    .await;
    let closed = "#session-list li[data-status=closed]";
    browser.wait_for(closed).await;
    let (text, _) = browser.text_and_session(closed).await;
    assert!(text.contains("operator"), "{text}");
    browser.click(&format!("{closed} .reopen-session")).await;
    browser.wait_for("#session-list li[data-status=open]").await;
    browser.assert_clean_console().await;
    browser.screenshot("dashboard-rails.png").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_a_hub_sees_its_codes_and_removes_it_and_the_feed_starts_with_recent_events()
{
    let api = api_common::start(2).await;
    // Before anyone looks: the feed must start with it all the same.
    api.events.publish(Event::SessionClosed {
        session_id: "ses_before_you_looked".into(),
    });
    let browser = browser(1280, 1000, false).await;
    browser.client().goto(&api.base).await.unwrap();
    browser.fill("#token", &api.admin).await;
    browser.click("#signin-form button[type=submit]").await;
    let earlier = browser
        .wait_for("#feed-list li[data-kind=session_closed]")
        .await;
    assert!(
        earlier
            .text()
            .await
            .unwrap()
            .contains("ses_before_you_looked")
    );
    let (text, _) = browser.text_and_session("#hub-list").await;
    assert!(text.contains("no hubs"), "{text}");

    // The admin adds a hub from its form (the number in the POST body).
    browser.fill("#hub-number", "07911 500500").await;
    browser.fill("#hub-label", "dispatch").await;
    browser.click("#hub-form button[type=submit]").await;
    let hub_row = "#hub-list li[data-hub]";
    browser.wait_for(hub_row).await;
    let (text, _) = browser.text_and_session(hub_row).await;
    assert!(text.contains("dispatch"), "{text}");
    assert!(text.contains("+447911500500"), "{text}");
    assert!(text.contains("0 open sessions"), "{text}");

    // Three people in sessions with it: the list shows each one's code
    // as the API gives it, live.
    let mut codes = Vec::new();
    for i in 1..=3 {
        let (status, session) = api
            .send(
                reqwest::Method::POST,
                "/api/v1/sessions",
                Some(&api.admin),
                Some(json!({
                    "participants": [format!("+44791160000{i}"), "+447911500500"],
                    "label": format!("job {i}"),
                })),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{session}");
        codes.push((
            session["id"].as_str().unwrap().to_string(),
            session["hub_code"].as_str().unwrap().to_string(),
        ));
    }
    browser.wait_for_count("#hub-list li.hub-session", 3).await;
    for (id, code) in &codes {
        let (text, _) = browser
            .text_and_session(&format!("#hub-list li.hub-session[data-session='{id}']"))
            .await;
        assert!(text.starts_with(code.as_str()), "{code}: {text}");
        // The session's row shows the code on the hub's side.
        let row = format!("#session-list li[data-session='{id}'] .hub-code");
        let badge = browser.wait_for(&row).await.text().await.unwrap();
        assert_eq!(&badge, code);
    }
    let (text, _) = browser.text_and_session(hub_row).await;
    assert!(text.contains("3 open sessions"), "{text}");
    assert!(text.contains("+447911600002"), "{text}");
    browser.screenshot("dashboard-hubs.png").await;

    // A viewer sees the hub and its codes, masked, and cannot change them.
    let viewer = browser_in(375, 812, true, None).await;
    viewer.client().goto(&api.base).await.unwrap();
    viewer.fill("#token", &api.viewer).await;
    viewer.click("#signin-form button[type=submit]").await;
    viewer.wait_for_count("#hub-list li.hub-session", 3).await;
    let (text, _) = viewer.text_and_session(hub_row).await;
    assert!(text.contains("+44*******500"), "{text}");
    assert!(!text.contains("7911500500"), "{text}");
    assert!(!text.contains("7911600002"), "{text}");
    assert_eq!(viewer.count(".remove-hub").await, 0);
    assert!(
        !viewer
            .wait_for("#hub-form")
            .await
            .is_displayed()
            .await
            .unwrap()
    );
    viewer.assert_fits_width().await;
    viewer.assert_clean_console().await;
    viewer.close().await;

    // Removing asks first, since it ends the three sessions.
    browser.click(".remove-hub").await;
    let asked = browser.wait_for(".remove-hub.confirm").await;
    assert!(asked.text().await.unwrap().contains("End its 3 sessions"));
    assert_eq!(browser.count("#hub-list li[data-hub]").await, 1);
    browser.click(".remove-hub.confirm").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while browser.count("#hub-list li[data-hub]").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the hub stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .wait_for_count("#session-list li[data-status=closed]", 3)
        .await;
    let (_, hubs) = api
        .send(reqwest::Method::GET, "/api/v1/hubs", Some(&api.admin), None)
        .await;
    assert_eq!(hubs, json!([]));
    browser.assert_clean_console().await;
    browser.close().await;
}
