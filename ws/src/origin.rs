//! Which pages may open a websocket: the check against cross-site websocket hijacking.
//!
//! Only browsers send `Origin`, and a non-browser client could send any value, so a request
//! without one is always let through; the check protects browser users from other sites' pages.

/// Whether a request with `origin` (the `Origin` header) and `host` (the `Host` header) may
/// open a websocket under the configured `allowed` list (see `GatewayConfig::allowed_origins`).
pub fn allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    if allowed.is_empty() {
        return host.is_some_and(|host| same_host(origin, host));
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `origin` (`scheme://host[:port]`) names the same host and port as the `Host` header.
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    if authority.is_empty() || authority.contains(['/', '@']) {
        return false;
    }
    let strip = |s: &str| {
        s.strip_suffix(default_port)
            .unwrap_or(s)
            .to_ascii_lowercase()
    };
    strip(authority) == strip(host.trim())
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn empty_list_means_same_host_or_no_origin() {
        let none: &[String] = &[];
        assert!(allowed(none, None, Some("flock:8080")));
        assert!(allowed(none, Some("http://flock:8080"), Some("flock:8080")));
        assert!(allowed(none, Some("https://Flock"), Some("flock:443")));
        assert!(allowed(none, Some("http://flock"), Some("flock")));
        assert!(!allowed(none, Some("http://evil:8080"), Some("flock:8080")));
        assert!(!allowed(
            none,
            Some("http://flock:8081"),
            Some("flock:8080")
        ));
        assert!(!allowed(none, Some("null"), Some("flock:8080")));
        assert!(!allowed(none, Some("http://flock:8080"), None));
    }

    #[test]
    fn list_and_star() {
        let list = ["https://flock.example/".to_string()];
        assert!(allowed(&list, Some("https://flock.example"), Some("x")));
        assert!(!allowed(
            &list,
            Some("https://flock.example.evil"),
            Some("flock.example.evil")
        ));
        assert!(
            !allowed(&list, Some("http://x:1"), Some("x:1")),
            "a list replaces the same-host rule"
        );
        assert!(allowed(&["*".to_string()], Some("null"), None));
    }
}
