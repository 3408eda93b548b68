//! Flash messages: one line of feedback carried across the redirect after an action, in a
//! short-lived cookie.
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::Flash;

const COOKIE: &str = "nightshift_flash";

/// After an action: go to `to`, showing `message` there. An htmx request is told to navigate
/// (`HX-Redirect`); a plain form post gets a 303.
pub fn redirect(htmx: bool, to: &str, message: &str) -> Response {
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict",
        hex(message)
    );
    let mut res = if htmx {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("HX-Redirect", v);
        }
        r
    } else {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// Reads the flash cookie into a [`Flash`] extension and clears it in the response.
pub async fn take_flash(mut req: Request, next: Next) -> Response {
    let message = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(unhex);
    let had = message.is_some();
    // Only full pages show it; an event stream, an asset or an htmx fragment (a table's
    // periodic refresh landing between a redirect and its page) must not consume it.
    let is_page = req.method() == axum::http::Method::GET
        && !req.headers().contains_key("hx-request")
        && !req.uri().path().ends_with("/events")
        && !req.uri().path().contains("/assets/");
    if !is_page {
        return next.run(req).await;
    }
    req.extensions_mut().insert(Flash(message));
    let mut res = next.run(req).await;
    if had {
        let clear = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&clear) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 2048 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
