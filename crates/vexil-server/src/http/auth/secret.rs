//! The key a request presents: in its headers, or for the one route a browser's `EventSource`
//! calls, in its query string.

use axum::http::HeaderMap;

/// The secret a request presents, if any: `Authorization: Bearer <secret>` (the scheme in any
/// case) or `X-API-Key: <secret>`, blanks around it ignored. Read as bytes, as this runs on
/// every request.
pub fn presented_secret(headers: &HeaderMap) -> Option<&str> {
    let secret = match headers.get(axum::http::header::AUTHORIZATION) {
        Some(value) => {
            let text = value.as_bytes();
            let (scheme, rest) = text.split_at_checked(7)?;
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            rest
        }
        None => headers.get("x-api-key")?.as_bytes(),
    };
    // Anything else in it (blanks inside, other bytes) matches no key: the lookup refuses it.
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        return None;
    }
    std::str::from_utf8(secret).ok()
}

/// A client key in the query string, `?key=<secret>` (percent-encoded), if any: for the one
/// route a browser's `EventSource` calls, which cannot send headers.
pub(super) fn query_secret(query: Option<&str>) -> Option<String> {
    let value = query?.split('&').find_map(|pair| pair.strip_prefix("key="))?;
    percent_decode(value).filter(|s| !s.trim().is_empty())
}

/// `%XX` sequences decoded (and `+` as a space, as forms encode it); `None` if malformed.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'%' => {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' => {
                bytes.push(b' ');
                rest = tail;
            }
            byte => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// `secret` percent-encoded for a query string: every byte but the unreserved ones.
pub fn percent_encode(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_in_the_query_string_is_percent_decoded() {
        assert_eq!(query_secret(Some("key=vx_cli_abc")).as_deref(), Some("vx_cli_abc"));
        assert_eq!(query_secret(Some("a=1&key=k%2Fe%20y&b=2")).as_deref(), Some("k/e y"));
        assert_eq!(query_secret(Some(&format!("key={}", percent_encode("k/e y+é")))).as_deref(), Some("k/e y+é"));
        for none in [None, Some(""), Some("key="), Some("key=%2"), Some("key=%zz"), Some("keys=x"), Some("key=%FF")] {
            assert_eq!(query_secret(none), None, "{none:?}");
        }
    }

    #[test]
    fn secrets_come_from_bearer_or_api_key_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_secret(&headers), None);
        headers.insert("x-api-key", "vx_cli_abc".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_cli_abc"));
        headers.insert("authorization", "Bearer vx_adm_xyz".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_adm_xyz"));
        headers.insert("authorization", "bEaReR   vx_adm_xyz ".parse().unwrap());
        assert_eq!(presented_secret(&headers), Some("vx_adm_xyz"));
        headers.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        assert_eq!(presented_secret(&headers), None);
        headers.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(presented_secret(&headers), None);
    }
}
