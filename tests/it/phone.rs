//! Every admin page in a real headless Chromium at a phone's width (390 × 844) and at a wide
//! desktop (1400 × 900): no page scrolls sideways (a wide table may scroll inside its own box),
//! the Errors tab's table fits at 1400 px even with a 2,000-character error, every page has a
//! skip link, an icon that loads and `aria-current` on the active tab, axe-core finds nothing
//! serious in the light or the dark scheme (login page included), and going from page to
//! page never waits for a connection held by the live streams of the pages left. The header's
//! live indicator follows the streams, without console errors.
//!
//! Without a `chromedriver` on the PATH these tests say so and pass, unless
//! `NIGHTSHIFT_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing browser fails them.
use std::time::Duration;

use fantoccini::{Client, Locator};
use nightshift::demo::NoArgs;
use nightshift::recurring::Recurring;
use nightshift::{JobContext, JobKind, JobStatus};
use serde_json::{Value, json};

use crate::app::{TestApp, spawn_app};
use crate::chromium::{self, Browser, ONE_AT_A_TIME, log_in, until};
use crate::helpers::{finished, wait_for};

/// A wide window; the tests narrow it to a phone's where they check one.
async fn browser() -> Option<Browser> {
    let scheme = match screenshots() {
        Some("dark") => "--force-dark-mode",
        _ => "--no-default-browser-check",
    };
    chromium::open("1400,900", &[scheme]).await
}

/// `NIGHTSHIFT_SCREENSHOTS=light` (or `dark`, for the dark scheme) keeps a picture of each page
/// checked, in `target/tmp/phone/`, to look at.
fn screenshots() -> Option<&'static str> {
    match std::env::var("NIGHTSHIFT_SCREENSHOTS").as_deref() {
        Ok("dark") => Some("dark"),
        Ok("light") | Ok("1") => Some("light"),
        _ => None,
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// How wide the page is against the viewport, and what sticks out of it (elements whose right
/// edge passes the viewport and that no scrolling box of theirs clips).
const MEASURE: &str = r#"
const de = document.documentElement;
const vw = de.clientWidth;
const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\s+/).join('.') : '');
const out = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.right <= vw + 0.5) continue;
  let p = el.parentElement, clipped = false;
  while (p && p !== document.body) {
    if (getComputedStyle(p).overflowX !== 'visible' && p.getBoundingClientRect().right <= vw + 0.5) { clipped = true; break; }
    p = p.parentElement;
  }
  if (!clipped) out.push(name(el) + ' (right ' + Math.round(r.right) + ')');
}
return { scrollWidth: de.scrollWidth, clientWidth: vw, innerWidth: window.innerWidth, culprits: out.slice(0, 8) };
"#;

/// The tables on the page that scroll sideways inside their box.
const SCROLLING_TABLES: &str = r#"
return Array.from(document.querySelectorAll('.table-wrap'))
  .filter(w => w.scrollWidth > w.clientWidth + 1)
  .map(w => (w.querySelector('table') || w).className + ': ' + w.scrollWidth + ' > ' + w.clientWidth);
"#;

/// axe-core, vendored (see `tests/fixtures/README.md`).
const AXE: &str = include_str!("../fixtures/axe.min.js");

/// The serious and critical accessibility violations axe-core finds on the current page, one
/// line each (rule, help, the first elements).
async fn axe(c: &Client) -> Vec<String> {
    js(c, &format!("{AXE}\n;return typeof axe;")).await;
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                   v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe did not run: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    found
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_else(|| vec![format!("axe answered {found}")])
}

struct Page {
    path: String,
    /// The navigation entry that should be marked current (`aria-current="page"`).
    current: Option<String>,
    /// At 1400 px, its tables must fit without scrolling.
    wide_tables_fit: bool,
}

fn page(path: &str, current: Option<&str>, wide_tables_fit: bool) -> Page {
    Page {
        path: path.to_owned(),
        current: current.map(str::to_owned),
        wide_tables_fit,
    }
}

/// Checks one page at the current window size; returns what is wrong with it.
async fn check(c: &Client, app: &TestApp, p: &Page, width: u32) -> Vec<String> {
    let mut wrong = Vec::new();
    let url = app.url(&p.path);
    let started = std::time::Instant::now();
    c.goto(&url).await.unwrap();
    until(
        c,
        &format!("{} loaded", p.path),
        "document.readyState === 'complete' && window.htmx && document.querySelector('main')",
    )
    .await;
    let at = format!("{} at {width} px", p.path);
    // The previous pages' streams must not hold the browser's connections to the server (six
    // over HTTP/1.1): a page waiting for one loads a minute late.
    let took = started.elapsed();
    if took > Duration::from_secs(10) {
        wrong.push(format!("{at}: the page took {took:?} to load"));
    }
    // Let the page script localize times (their width changes) and htmx settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if screenshots().is_some() {
        let dark = js(
            c,
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
        )
        .await;
        let scheme = if dark == json!(true) { "dark" } else { "light" };
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("phone");
        std::fs::create_dir_all(&dir).unwrap();
        let name: String = p
            .path
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .collect();
        // The whole page: a window as tall as it.
        let (_, _, w, h) = c.get_window_rect().await.unwrap();
        let tall = js(c, "return document.documentElement.scrollHeight;").await;
        let tall = tall.as_u64().unwrap_or(h).clamp(h, 5000);
        c.set_window_size(w as u32, tall as u32).await.unwrap();
        let shot = c.screenshot().await.unwrap();
        c.set_window_size(w as u32, h as u32).await.unwrap();
        std::fs::write(dir.join(format!("{scheme}-{width}{name}.png")), shot).unwrap();
    }

    let m = js(c, MEASURE).await;
    let inner = m["innerWidth"].as_i64().unwrap();
    assert_eq!(
        inner, width as i64,
        "the window is {inner} px wide, not {width}"
    );
    let scroll = m["scrollWidth"].as_i64().unwrap();
    let client = m["clientWidth"].as_i64().unwrap();
    if scroll > client || scroll > inner {
        wrong.push(format!(
            "{at}: the page is {scroll} px wide in a {client} px viewport; sticking out: {}",
            m["culprits"]
        ));
    }
    if width >= 1400 && p.wide_tables_fit {
        let tables = js(c, SCROLLING_TABLES).await;
        if tables.as_array().is_some_and(|t| !t.is_empty()) {
            wrong.push(format!("{at}: tables scroll sideways: {tables}"));
        }
    }

    // A skip link, first in the page, to the main content.
    let skip = js(
        c,
        "const a = document.querySelector('a[href]');
         return !!a && a.getAttribute('href') === '#main' && !!document.getElementById('main');",
    )
    .await;
    if skip != json!(true) {
        wrong.push(format!("{at}: the first link is not a skip link to #main"));
    }

    if let Some(current) = &p.current {
        let marked = js(
            c,
            "return Array.from(document.querySelectorAll('nav [aria-current=page]'))
               .map(a => a.getAttribute('href'));",
        )
        .await;
        let want = app.prefix.clone() + current;
        if marked != json!([want]) {
            wrong.push(format!(
                "{at}: aria-current=page should be on {want} alone, is on {marked}"
            ));
        }
    }

    for v in axe(c).await {
        wrong.push(format!("{at}: axe: {v}"));
    }

    // The page names an icon that loads (so the browser does not ask for /favicon.ico).
    let icon = js(
        c,
        "const l = document.querySelector('link[rel~=icon]'); return l ? l.href : null;",
    )
    .await;
    match icon.as_str() {
        None => wrong.push(format!("{at}: no <link rel=icon>")),
        Some(href) if href.starts_with("data:image/") => {}
        Some(href) => {
            let res = app.anonymous.get(href).send().await.unwrap();
            let ty = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if res.status() != 200 || !ty.starts_with("image/") {
                wrong.push(format!(
                    "{at}: the icon {href} answers {} ({ty})",
                    res.status()
                ));
            }
        }
    }
    wrong
}

/// Checks the login page (no operator yet) at the current window size.
async fn check_login(c: &Client, app: &TestApp, width: u32) -> Vec<String> {
    let mut wrong = Vec::new();
    c.goto(&app.url("/login")).await.unwrap();
    until(
        c,
        "the login page",
        "document.readyState === 'complete' && document.querySelector('input[name=password]')",
    )
    .await;
    let at = format!("/login at {width} px");
    let m = js(c, MEASURE).await;
    if m["scrollWidth"].as_i64() > m["clientWidth"].as_i64() {
        wrong.push(format!(
            "{at}: the page is wider than its viewport; sticking out: {}",
            m["culprits"]
        ));
    }
    for v in axe(c).await {
        wrong.push(format!("{at}: axe: {v}"));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_phone_and_a_wide_screen() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;

    // One job in each tab: an error that is a single 2,000-character word, a long import with
    // a log and results, a running job and a scheduled one.
    let word = "x".repeat(2000);
    let w = word.clone();
    app.worker
        .register(JobKind::new(
            "Long Error",
            move |_: NoArgs, _: JobContext| {
                let w = w.clone();
                async move { anyhow::bail!(w) }
            },
        ))
        .unwrap();
    let failed = app.create("Long Error", json!({})).await;
    let import = app.create("Import Products", json!({"rows": 60})).await;
    let running = app.create("Work", json!({"lines": 3, "ms": 600_000})).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    app.worker
        .schedule_dynamic("Work", &json!({"lines": 1}), later)
        .await
        .unwrap();
    let schedule = app
        .worker
        .add_recurring(
            Recurring::new("long-error", "0 3 * * *", "Long Error", &json!({})),
            "tests",
        )
        .await
        .unwrap();
    let from_schedule = app
        .worker
        .run_recurring(schedule.id, "tests")
        .await
        .unwrap();
    let job = finished(&app.worker, failed).await;
    assert_eq!(job.status, JobStatus::Exception);
    assert!(job.error.as_deref().unwrap_or_default().contains(&word));
    finished(&app.worker, from_schedule.id).await;
    wait_for(&app.worker, running, "running", |j| {
        j.status == JobStatus::Running
    })
    .await;
    let job = finished(&app.worker, import).await;
    assert_eq!(job.status, JobStatus::Exception, "rows with errors");

    let mut wrong = Vec::new();
    c.goto(&app.url("/login")).await.unwrap();
    until(c, "the login page", "document.readyState === 'complete'").await;
    if screenshots() != Some("dark") {
        assert_eq!(
            js(
                c,
                "return matchMedia('(prefers-color-scheme: dark)').matches;"
            )
            .await,
            json!(false),
            "the first browser shows the light scheme"
        );
    }
    // The login page, before logging in: the first page anyone sees.
    for (width, height) in [(390, 844), (1400, 900)] {
        c.set_window_size(width, height).await.unwrap();
        wrong.extend(check_login(c, &app, width).await);
    }
    log_in(c, &app).await;

    let mut pages = Vec::new();
    for tab in ["all", "running", "scheduled", "done", "errors"] {
        let path = format!("/workers?status={tab}");
        pages.push(page(&path, Some(&path), true));
    }
    for tab in ["killed", "cancelled"] {
        pages.push(page(&format!("/workers?status={tab}"), None, true));
    }
    pages.extend([
        page("/dashboard", Some("/dashboard"), true),
        page(&format!("/workers/{import}"), None, false),
        page(&format!("/workers/{failed}"), None, false),
        page(&format!("/workers/{running}"), None, false),
        page("/workers/new", None, false),
        page("/workers/new?job=Send%20Newsletter", None, false),
        page("/nodes", Some("/nodes"), false),
        page("/queues", Some("/queues"), false),
        page("/recurring", Some("/recurring"), false),
        page("/recurring/new", None, false),
        page("/operators", Some("/operators"), false),
        page("/tokens", Some("/tokens"), false),
        page("/audit", Some("/audit"), false),
    ]);

    for (width, height) in [(390, 844), (1400, 900)] {
        c.set_window_size(width, height).await.unwrap();
        for p in &pages {
            wrong.extend(check(c, &app, p, width).await);
        }
    }
    b.client.clone().close().await.ok();

    // The dark scheme (`prefers-color-scheme: dark`): its own colours, so its own contrast. At
    // a phone's width, where the most is wrapped and stacked.
    let dark = chromium::open("1400,900", &["--force-dark-mode"])
        .await
        .expect("a browser opened once opens twice");
    let d = &dark.client;
    // Narrowed once open (a window opened narrower than 500 px stays 500 wide).
    d.set_window_size(390, 844).await.unwrap();
    d.goto(&app.url("/login")).await.unwrap();
    until(d, "the login page", "document.readyState === 'complete'").await;
    assert_eq!(
        js(
            d,
            "return matchMedia('(prefers-color-scheme: dark)').matches;"
        )
        .await,
        json!(true),
        "the browser for the dark scheme prefers it"
    );
    let tagged = |v: Vec<String>| v.into_iter().map(|w| format!("dark: {w}"));
    wrong.extend(tagged(check_login(d, &app, 390).await));
    log_in(d, &app).await;
    for p in &pages {
        wrong.extend(tagged(check(d, &app, p, 390).await));
    }
    dark.client.clone().close().await.ok();
    // It may have ended already (a slow machine): only stop it.
    app.worker.abort(running, "tests").await.ok();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_shows_whether_live_updates_are_connected() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let c = &b.client;
    log_in(c, &app).await;
    // A list page keeps a stream open: the indicator says so, in words too.
    until(
        c,
        "the indicator live",
        "document.querySelector('.live-status.is-live')",
    )
    .await;
    let said = js(
        c,
        "return document.querySelector('.live-status').textContent;",
    )
    .await;
    assert!(said.as_str().unwrap_or_default().contains("Live"), "{said}");
    // A stream the server refuses goes offline quietly: no console error, a retry later.
    js(
        c,
        "window.__errors = []; const e = console.error;
         console.error = function () { window.__errors.push(Array.from(arguments).join(' ')); e.apply(console, arguments); };
         window.__source = htmx.createEventSource(location.pathname + '/nope/events');",
    )
    .await;
    until(
        c,
        "the indicator offline",
        "document.querySelector('.live-status.is-offline')",
    )
    .await;
    js(c, "window.__source.close();").await;
    until(
        c,
        "the indicator live again once the refused stream is closed",
        "document.querySelector('.live-status.is-live')",
    )
    .await;
    assert_eq!(js(c, "return window.__errors;").await, json!([]));
    // Every page an operator sees keeps the counts live, so the nodes page says so too.
    c.goto(&app.url("/nodes")).await.unwrap();
    until(c, "the nodes page", "document.querySelector('#nodes')").await;
    until(
        c,
        "the indicator live on the nodes page",
        "document.querySelector('.live-status.is-live')",
    )
    .await;
    b.client.clone().close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_read_relative_with_the_exact_time_on_hover_in_a_remembered_zone() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(b) = browser().await else { return };
    let app = spawn_app().await;
    let id = app.create("Work", json!({})).await;
    finished(&app.worker, id).await;
    let c = &b.client;
    log_in(c, &app).await;
    c.goto(&app.url("/workers")).await.unwrap();
    until(
        c,
        "a relative time",
        "document.querySelector('td time .rel')",
    )
    .await;
    let t = js(
        c,
        "const t = document.querySelector('td time'); return [t.textContent, t.title];",
    )
    .await;
    let (text, title) = (t[0].as_str().unwrap(), t[1].as_str().unwrap());
    assert!(
        text == "just now" || text.ends_with(" ago"),
        "relative: {text:?}"
    );
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(
        title.contains(&year) && !title.ends_with(" UTC"),
        "exact, local: {title:?}"
    );
    // The switch shows UTC, and the choice outlives the page.
    c.find(Locator::Css("[data-tz-switch]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "times in UTC",
        "document.querySelector('td time').title.endsWith(' UTC')",
    )
    .await;
    c.goto(&app.url("/workers?status=done")).await.unwrap();
    until(c, "UTC remembered", "document.querySelector('td time') && document.querySelector('td time').title.endsWith(' UTC') && document.querySelector('[data-tz-switch]').getAttribute('aria-pressed') === 'true'").await;
    c.find(Locator::Css("[data-tz-switch]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "local again",
        "!document.querySelector('td time').title.endsWith(' UTC')",
    )
    .await;
    b.client.clone().close().await.ok();
}
