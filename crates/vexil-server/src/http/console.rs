//! The web console (SPEC 9, `GET /`): plain HTML, CSS and ES modules from the crate's `console/`
//! folder, embedded in the binary, so neither running nor building the service needs anything
//! else. `/` is the page; `/console/<file>` its scripts and styles.
//!
//! Each file is answered with its content type, an `ETag` (its SHA-256, computed at build time)
//! and `Cache-Control: no-cache`, so a browser revalidates on each load and gets a 304 while the
//! binary is the same, and never runs scripts of an older release. A client that accepts gzip
//! gets the file compressed, compressed once per file and process. Every answer carries a
//! Content-Security-Policy that allows only this origin: the console has no inline script or
//! style, and calls only its own server.

use crate::http::error::ApiError;
use crate::http::extract::{accepts_gzip, if_none_match};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(RustEmbed)]
#[folder = "console/"]
struct Assets;

/// Only this origin: scripts, styles, images, fetches and the event stream. No framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

static CSP: HeaderName = HeaderName::from_static("content-security-policy");

/// `GET /`: the console's page.
pub async fn page(headers: HeaderMap) -> Response {
    asset("index.html", &headers)
}

/// `GET /console/{*path}`: one of the console's files; 404 for any other name. The name is
/// taken from the path as sent: no file's name needs decoding, so one that does names none.
pub async fn file(uri: Uri, headers: HeaderMap) -> Response {
    asset(uri.path().strip_prefix("/console/").unwrap_or_default(), &headers)
}

/// The answer for the embedded file `name`.
fn asset(name: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(name) else {
        return ApiError::not_found("not_found", format!("the console has no file \"{name}\"")).into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let mut response = if if_none_match(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let mut response = gzipped(name, &file.data).into_response();
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        file.data.into_owned().into_response()
    };
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(file.metadata.mimetype()).expect("MIME types are header-safe");
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("a hex digest is header-safe"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(CSP.clone(), HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

/// `data` gzip-compressed, once per file for the life of the process.
fn gzipped(name: &str, data: &[u8]) -> axum::body::Bytes {
    static COMPRESSED: OnceLock<Mutex<HashMap<String, Arc<[u8]>>>> = OnceLock::new();
    let cache = COMPRESSED.get_or_init(Default::default);
    if let Some(done) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
        return axum::body::Bytes::from_owner(done.clone());
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).expect("writing to memory cannot fail");
    let done: Arc<[u8]> = encoder.finish().expect("writing to memory cannot fail").into();
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), done.clone());
    axum::body::Bytes::from_owner(done)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(name: &str, headers: &[(&'static str, &str)]) -> Response {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        asset(name, &map)
    }

    #[test]
    fn files_have_their_type_a_tag_and_a_policy() {
        let page = get("index.html", &[]);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html");
        assert!(page.headers()[CSP.clone()].to_str().unwrap().starts_with("default-src 'self'"));
        let script = get("app.js", &[]);
        assert!(script.headers()[header::CONTENT_TYPE].to_str().unwrap().contains("javascript"));
        let etag = script.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag.len(), 66, "a quoted SHA-256: {etag}");
        assert_eq!(get("app.js", &[("if-none-match", &etag)]).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("app.js", &[("accept-encoding", "gzip")]).headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(get("missing.js", &[]).status(), StatusCode::NOT_FOUND);
        assert_eq!(get("../Cargo.toml", &[]).status(), StatusCode::NOT_FOUND);
    }
}
