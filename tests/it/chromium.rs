//! One headless Chromium per browser test (Debian's `chromium` and `chromium-driver`, driven over
//! WebDriver), one test at a time across every file that uses it.
//!
//! Without a `chromedriver` on the PATH the tests say so and pass, unless
//! `NIGHTSHIFT_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails them.
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::app::TestApp;
use serde_json::json;

/// Chromium is heavy on a 2-core machine: one browser test at a time.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A headless Chromium with a fresh profile, its window `width,height` (e.g. `"1280,1000"`),
/// with `extra` arguments; `None` (the test passes, saying so) without a chromedriver unless
/// `NIGHTSHIFT_REQUIRE_BROWSER=1`. Hold [`ONE_AT_A_TIME`] while it runs.
pub async fn open(window: &str, extra: &[&str]) -> Option<Browser> {
    open_in_zone(window, extra, None).await
}

/// [`open`], the browser's local time zone `zone` (e.g. `"Asia/Kolkata"`) instead of the
/// machine's.
pub async fn open_in_zone(window: &str, extra: &[&str], zone: Option<&str>) -> Option<Browser> {
    let driver_bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(driver_bin) = driver_bin else {
        if std::env::var("NIGHTSHIFT_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("chromedriver is not installed (apt-get install chromium chromium-driver)");
        }
        eprintln!(
            "skipping browser test: no chromedriver (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut driver = Command::new(driver_bin);
    if let Some(zone) = zone {
        // Chromium, started by the driver, inherits it.
        driver.env("TZ", zone);
    }
    let driver = driver
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("--window-size={window}"));
    args.push(format!("--user-data-dir={}", profile.path().display()));
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last_err = None;
    for _ in 0..50 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Some(Browser {
                    client,
                    driver,
                    _profile: profile,
                });
            }
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not start a Chromium session: {last_err:?}");
}

/// Polls `cond` in the page (a JS expression) until it is true.
pub async fn until(c: &Client, what: &str, js: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = c
            .execute(&format!("return !!({js});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            // The main content, where what is waited for lives (the head is the same on
            // every page).
            let main = c
                .execute(
                    "return (document.querySelector('main') || document.body).outerHTML;",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let end = main.char_indices().nth(6000).map_or(main.len(), |(i, _)| i);
            panic!(
                "timed out waiting for {what} ({js});\nmain: {}",
                &main[..end]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` finds; found again when a live swap replaced it in between (the
/// job page's status panel is swapped whole by its stream: a stale element, under load).
pub async fn click(c: &Client, css: &str) {
    for attempt in 0.. {
        let res = c.find(Locator::Css(css)).await.unwrap().click().await;
        match res {
            Ok(_) => return,
            Err(e) if attempt < 5 && format!("{e:?}").contains("StaleElementReference") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("click {css}: {e:?}"),
        }
    }
}

/// Logs in through the login page as the test app's admin, starting at `path`, and waits for
/// `landed` (a CSS selector) on the page it leads to, `what` in a failure.
pub async fn log_in_to(c: &Client, app: &TestApp, path: &str, what: &str, landed: &str) {
    c.goto(&app.url(path)).await.unwrap();
    until(
        c,
        "the login page",
        "document.querySelector('input[name=password]')",
    )
    .await;
    c.find(Locator::Css("[name=name]"))
        .await
        .unwrap()
        .send_keys("admin")
        .await
        .unwrap();
    c.find(Locator::Css("[name=password]"))
        .await
        .unwrap()
        .send_keys(crate::app::ADMIN_PASSWORD)
        .await
        .unwrap();
    click(c, "button[type=submit]").await;
    until(c, what, &format!("document.querySelector('{landed}')")).await;
}

/// Logs in as the test app's admin, landing on the job list.
pub async fn log_in(c: &Client, app: &TestApp) {
    log_in_to(c, app, "/workers", "the job list", "table.jobs").await;
}
