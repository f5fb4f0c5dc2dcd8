//! Which pages may open a websocket: the check against cross-site websocket hijacking.
//!
//! Only browsers send `Origin`, and a non-browser client could send any value, so a request
//! without one is always let through; the check protects browser users from other sites' pages.

/// Whether a request with `origin` (the `Origin` header) and `host` (the `Host` header) may
/// open a websocket under the configured `allowed` list (see `GatewayConfig::allowed_origins`).
/// `scheme` is how the browser reached this port: `https` over TLS here (or at a trusted
/// proxy that said so), else `http`.
pub fn allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>, scheme: &str) -> bool {
    let Some(origin) = origin.map(str::trim) else {
        return true;
    };
    if allowed.is_empty() {
        return host.is_some_and(|host| same_origin(origin, scheme, host));
    }
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// `origin` (`scheme://host[:port]`) is exactly `scheme://` and the `Host` header, with the
/// scheme's default port written or not.
fn same_origin(origin: &str, scheme: &str, host: &str) -> bool {
    let Some((origin_scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !origin_scheme.eq_ignore_ascii_case(scheme) {
        return false;
    }
    let default_port = match scheme {
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
    fn empty_list_means_same_origin_or_no_origin() {
        let none: &[String] = &[];
        let http = |o: &str, h: &str| allowed(none, Some(o), Some(h), "http");
        let https = |o: &str, h: &str| allowed(none, Some(o), Some(h), "https");
        assert!(allowed(none, None, Some("flock:8080"), "http"));
        assert!(allowed(none, None, None, "https"));
        assert!(http("http://flock:8080", "flock:8080"));
        assert!(https("https://Flock", "flock:443"));
        assert!(https("https://flock:443", "flock"));
        assert!(https("https://flock:8443", "flock:8443"));
        assert!(http("http://flock", "flock"));
        assert!(http("http://flock", "flock:80"));
        assert!(!http("https://flock", "flock:443"), "scheme differs");
        assert!(!http("https://flock:8080", "flock:8080"), "scheme differs");
        assert!(!https("http://flock:8443", "flock:8443"), "scheme differs");
        assert!(
            !https("https://flock", "flock:80"),
            "default port of the other scheme"
        );
        assert!(!http("http://evil:8080", "flock:8080"));
        assert!(!http("http://flock:8081", "flock:8080"), "port differs");
        assert!(!https("https://flock:8444", "flock:8443"), "port differs");
        assert!(!http("null", "flock:8080"));
        assert!(!https("null", "flock:8443"));
        assert!(!allowed(none, Some("http://flock:8080"), None, "http"));
    }

    #[test]
    fn list_and_star() {
        let list = ["https://flock.example/".to_string()];
        assert!(allowed(
            &list,
            Some("https://flock.example"),
            Some("x"),
            "http"
        ));
        assert!(!allowed(
            &list,
            Some("https://flock.example.evil"),
            Some("flock.example.evil"),
            "https"
        ));
        assert!(!allowed(
            &list,
            Some("http://flock.example"),
            Some("x"),
            "http"
        ));
        assert!(
            !allowed(&list, Some("http://x:1"), Some("x:1"), "http"),
            "a list replaces the same-origin rule"
        );
        assert!(allowed(&["*".to_string()], Some("null"), None, "https"));
    }
}
