//! Static assets, embedded in the binary: htmx, its SSE extension, the stylesheet and the small
//! page script. Served with long cache lifetimes (links carry the version).
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::admin::error::WebError;

const HTMX: &[u8] = include_bytes!("../../../assets/htmx-2.0.11.min.js");
const SSE: &[u8] = include_bytes!("../../../assets/htmx-ext-sse-2.2.4.min.js");
const CSS: &[u8] = include_bytes!("../../../assets/nightshift.css");
const JS: &[u8] = include_bytes!("../../../assets/nightshift.js");

pub async fn asset(Path(file): Path<String>) -> Result<Response, WebError> {
    let (body, mime) = match file.as_str() {
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "sse.min.js" => (SSE, "text/javascript; charset=utf-8"),
        "nightshift.js" => (JS, "text/javascript; charset=utf-8"),
        "nightshift.css" => (CSS, "text/css; charset=utf-8"),
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
