//! Static assets, embedded in the binary: htmx, its SSE extension, the stylesheet, the small
//! page script and the icon. Served with long cache lifetimes (links carry the version).
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::admin::error::WebError;

const HTMX: &[u8] = include_bytes!("../../../assets/htmx-2.0.11.min.js");
const SSE: &[u8] = include_bytes!("../../../assets/htmx-ext-sse-2.2.4.min.js");
const CSS: &[u8] = include_bytes!("../../../assets/nightshift.css");
const JS: &[u8] = include_bytes!("../../../assets/nightshift.js");

/// The icon's file name, as the pages link it (`<link rel="icon">`: browsers then do not ask
/// for `/favicon.ico`).
pub const ICON: &str = "icon.svg";
/// A crescent moon on the header's night blue.
const ICON_SVG: &[u8] = br##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#161b2e"/><path d="M19.5 5.5a11 11 0 1 0 7 19.4A9 9 0 0 1 19.5 5.5z" fill="#ffd43b"/></svg>"##;

pub async fn asset(Path(file): Path<String>) -> Result<Response, WebError> {
    let (body, mime) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "sse.min.js" => (SSE, "text/javascript; charset=utf-8"),
        "nightshift.js" => (JS, "text/javascript; charset=utf-8"),
        "nightshift.css" => (CSS, "text/css; charset=utf-8"),
        ICON => (ICON_SVG, "image/svg+xml"),
        _ => {
            let file = crate::text::quote(&file);
            return Err(WebError::not_found(format!("no asset {file}")));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response())
}
