//! One headless Chromium per test, driven through its own chromedriver (WebDriver) with
//! fantoccini: what a person does in the console, and what the browser reported while they did.
//!
//! Chromium and chromedriver come from `VEXIL_TEST_CHROMIUM` and `VEXIL_TEST_CHROMEDRIVER`
//! (`scripts/chromium.sh` installs Debian's packages and prints them; `scripts/test.sh` runs it).
//! Without them a test fails, or skips under `VEXIL_TEST_ALLOW_SKIPS=1`.
//!
//! [`Browser::finish`] saves a screenshot of the page under the cargo target directory
//! (`tmp/console-screenshots/<test>.png`) and fails the test on any error the browser logged:
//! a script error, a rejected promise nobody handled, `console.error`, a file that did not load.
//! The API's own refusals (a 4xx answer to a `/v1/` call, which the page shows at its field) are
//! expected and allowed; the browser logs those too.

use crate::harness::{Server, PATIENCE};
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Stdio;

/// Chromium's flags: headless, and nothing that reaches out of the machine on its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1366,900",
];

pub struct Browser {
    pub client: Client,
    pub base: String,
    test: &'static str,
    /// chromedriver, leader of its own process group, which Chromium's processes join.
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser on `server`'s console for the test named `test`; `None` when the test skips.
    pub async fn open(server: &Server, test: &'static str) -> Option<Browser> {
        let how = "scripts/chromium.sh installs Chromium and chromedriver and prints it; scripts/test.sh runs it";
        let chromedriver = vexil_store::testkit::required_variable("VEXIL_TEST_CHROMEDRIVER", how)?;
        let chromium = vexil_store::testkit::required_variable("VEXIL_TEST_CHROMIUM", how)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let webdriver = format!("http://127.0.0.1:{port}");
        crate::harness::eventually("chromedriver listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
        })
        .await;
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("chromedriver did not start Chromium: {e}"));
        Some(Browser { client, base: server.base.clone(), test, driver, _profile: profile })
    }

    /// Opens the console at `path` (`/`, `/#/flags`, ...).
    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The element `css` selects, once it is there.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Replaces the text of the input `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css).await.select_by_value(value).await.unwrap();
    }

    /// The text of `css` once it contains `wanted`.
    pub async fn wait_text(&self, css: &str, wanted: &str) -> String {
        crate::harness::eventually(&format!("{css} shows {wanted:?}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            text.contains(wanted).then_some(text)
        })
        .await
    }

    /// The text of `css` once it shows any (an error message, a result).
    pub async fn wait_shown(&self, css: &str) -> String {
        crate::harness::eventually(&format!("{css} shows text"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let text = element.text().await.ok()?;
            (!text.trim().is_empty()).then_some(text)
        })
        .await
    }

    /// Whether `css` selects anything now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    /// Runs `script` in the page and answers its value.
    pub async fn script(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs an asynchronous `script` (its last argument is the callback) and answers its value.
    pub async fn script_async(&self, script: &str) -> Value {
        self.client.execute_async(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Signs in through the sign-in form and waits for the console.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.goto("/").await;
        self.fill("#signin input[name=username]", username).await;
        self.fill("#signin input[name=password]", password).await;
        self.click("#signin button[type=submit]").await;
        self.wait_text("#who", username).await;
    }

    /// Signs out and waits for the sign-in form.
    pub async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.find("#signin").await;
    }

    /// Fills the open dialog's `textarea` (its reason) and confirms it.
    pub async fn confirm_dialog(&self, reason: Option<&str>) {
        if let Some(reason) = reason {
            self.fill("dialog[open] textarea", reason).await;
        }
        self.click("dialog[open] button[type=submit]").await;
        crate::harness::eventually("the dialog closes", || async {
            (!self.exists("dialog[open]").await).then_some(())
        })
        .await;
    }

    /// Saves a screenshot, fails on any error the browser logged, and ends the session.
    pub async fn finish(self) {
        self.screenshot(self.test).await;
        let errors = self.errors().await;
        self.client.clone().close().await.unwrap();
        assert!(errors.is_empty(), "the browser logged errors:\n{}", errors.join("\n"));
    }

    /// Saves a screenshot of the page as `<name>.png`; answers where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await.unwrap()).unwrap();
        path
    }

    /// Empties the browser's log: what it logged so far was not about the console.
    pub async fn forget_log(&self) {
        self.errors().await;
    }

    /// The errors the browser logged since the last call, but for the API's 4xx answers.
    async fn errors(&self) -> Vec<String> {
        let entries = self.client.issue_cmd(BrowserLog).await.unwrap();
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .filter(|message| !api_refusal(message))
            .collect()
    }
}

/// Whether a logged message is the browser noting a 4xx answer of the API (`/v1/...`), which
/// the console handles: it shows the refusal at its field, or the sign-in form.
fn api_refusal(message: &str) -> bool {
    let status = message.split("status of ").nth(1).and_then(|rest| rest.get(..3)).and_then(|s| s.parse::<u16>().ok());
    message.contains("/v1/") && status.is_some_and(|s| (400..500).contains(&s))
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process it started, also when a test failed.
    fn drop(&mut self) {
        if let Some(group) = self.driver.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
        }
    }
}

/// chromedriver's log of the browser (`POST /session/{id}/se/log {"type": "browser"}`), which
/// W3C WebDriver has no command for.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(r#"{"type": "browser"}"#.to_string()))
    }
}

/// Whether the diff the page shows (`text`) has a line marked `mark` (`-` removed, `+` added)
/// containing `content`.
pub fn diff_line(text: &str, mark: char, content: &str) -> bool {
    text.lines().any(|line| line.starts_with(mark) && line.contains(content))
}

/// Creates a person through the API with the admin key.
pub async fn create_user(server: &Server, username: &str, role: &str, environments: Value) {
    let body =
        json!({"username": username, "password": password(username), "role": role, "environments": environments});
    let (status, created) = server.call(reqwest::Method::POST, "/v1/admin/users", Some(body)).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{created}");
}

/// The password the tests give `username`.
pub fn password(username: &str) -> String {
    format!("{username}-correct-horse-battery")
}
