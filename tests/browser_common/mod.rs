//! The dashboard in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs), for the fault tests
//! that watch a running `simmask run` through it: sign in with a token, then
//! read the page with small scripts. A missing driver fails the test.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// How long the page may take to show what a step waits for.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver and a headless chromium session; both end on drop.
pub struct Browser {
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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A desktop window on a fresh chromedriver.
    pub async fn start() -> Browser {
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
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let client = loop {
            let mut builder =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
            builder.capabilities(capabilities.clone());
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("chromedriver on port {port}: {error}"),
            }
        };
        browser.client = Some(client);
        browser
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Opens the dashboard at `base` and signs in with `token`; waits for
    /// `cards` SIM cards.
    pub async fn sign_in(&self, base: &str, token: &str, cards: usize) {
        self.client().goto(base).await.unwrap();
        let field = self
            .client()
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("#token"))
            .await
            .expect("the sign-in form");
        field.send_keys(token).await.unwrap();
        self.client()
            .find(Locator::Css("#signin-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.wait_until(
            &format!("return document.querySelectorAll('.card.sim').length >= {cards};"),
            "the bank's cards",
        )
        .await;
    }

    /// Runs `script` (a function body) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// Waits until `script` returns true.
    pub async fn wait_until(&self, script: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.eval(script).await != json!(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dashboard never showed {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The store banner: `None` while hidden, else its text.
    pub async fn store_banner(&self) -> Option<String> {
        self.eval(
            "const b = document.getElementById('store'); return b.hidden ? null : b.innerText;",
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    /// Each SIM card's state badge and its text, by ICCID.
    pub async fn cards(&self) -> Value {
        self.eval(
            "const out = {};\
             document.querySelectorAll('.card.sim').forEach((card) => {\
               out[card.dataset.sim] = {\
                 badge: card.querySelector('.head .badge').innerText,\
                 healthy: !card.classList.contains('unhealthy'),\
                 text: card.innerText };\
             });\
             return out;",
        )
        .await
    }

    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}
