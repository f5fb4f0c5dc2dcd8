//! The HTTP side of the port: read one request head (bounded in size; the caller bounds the
//! time), answer the page, the client module and `/healthz`, or say that it is a websocket
//! upgrade or a `/metrics` scrape (rendered by the caller, which knows the counters and the
//! client's address). Every plain answer closes the connection: browsers fetch two small files, so
//! keep-alive would only keep sockets open.

use crate::origin;
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers in a request head (browsers send about 20).
const MAX_HEADERS: usize = 64;

const INDEX_HTML: &str = include_str!("../web/index.html");
const FLOCK_JS: &str = include_str!("../web/flock.js");

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Answer and close.
    Respond(Response),
    /// A websocket upgrade on `/ws` from an allowed origin: hand the connection over.
    WebSocket,
    /// `GET /metrics`: check the client's address, render the counters, answer and close.
    Metrics,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    content_type: &'static str,
    body: Cow<'static, str>,
    /// Extra header lines, each ending in CRLF.
    headers: Cow<'static, str>,
}

impl Response {
    pub fn status(status: u16) -> Response {
        let body = match status {
            400 => "bad request\n",
            403 => "origin not allowed\n",
            404 => "not found\n",
            405 => "method not allowed\n",
            426 => "websocket upgrade required\n",
            429 => "too many connections from this address\n",
            503 => "server full\n",
            _ => "\n",
        };
        let headers = match status {
            405 => "Allow: GET\r\n",
            426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            _ => "",
        };
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed(body),
            headers: Cow::Borrowed(headers),
        }
    }

    fn ok(content_type: &'static str, body: &'static str) -> Response {
        Response {
            status: 200,
            content_type,
            body: Cow::Borrowed(body),
            headers: Cow::Borrowed(""),
        }
    }

    /// A `/metrics` answer: Prometheus text exposition format 0.0.4.
    pub fn metrics(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Cow::Owned(body),
            headers: Cow::Borrowed(""),
        }
    }

    /// `/metrics` from an address outside `metrics_allow`.
    pub fn metrics_forbidden() -> Response {
        Response {
            status: 403,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed("metrics not served to this address\n"),
            headers: Cow::Borrowed(""),
        }
    }

    /// 308 to `location` (the redirect listener's answer).
    fn redirect(location: String) -> Response {
        Response {
            status: 308,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Borrowed("use https\n"),
            headers: Cow::Owned(format!("Location: {location}\r\n")),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n\
             Connection: close\r\n{}\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.headers
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Reads until the end of the request head. Returns the bytes read (the head, and whatever
/// followed it in the same reads); `None` when the peer closed early or the head is over
/// [`MAX_HEAD`] (either way: answer 400, or just drop).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    // Heap, not stack: an array here would stay in the connection's future for its lifetime.
    let mut buf = vec![0; MAX_HEAD];
    let mut len = 0;
    loop {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) | Err(_) => break,
            Ok(httparse::Status::Partial) if len == MAX_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => {}
        }
    }
    buf.truncate(len);
    Ok(Some(buf))
}

/// The value of header `name` in a complete request head.
pub fn header_value(head: &[u8], name: &str) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(head).ok()?;
    let h = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))?;
    std::str::from_utf8(h.value).ok().map(str::to_owned)
}

/// Every value of header `name` in a complete request head, in order.
pub fn header_values<'h>(head: &'h [u8], name: &str) -> Vec<&'h str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return Vec::new();
    }
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .collect()
}

/// The redirect listener's answer to `head`: 308 to the same host and path over https on
/// `port` (written unless 443); 400 without a usable `Host`.
pub fn redirect_to_https(head: &[u8], port: u16) -> Response {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Response::status(400);
    }
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
        .unwrap_or("");
    // The host without its port: a bracketed IPv6 literal, or up to the colon.
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(a, _)| format!("[{a}]")),
        None => host.split(':').next().map(str::to_owned),
    };
    let path = req.path.unwrap_or("/");
    let usable = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    match name {
        Some(name) if usable(&name) && path.starts_with('/') && !path.starts_with("//") => {
            let port = if port == 443 {
                String::new()
            } else {
                format!(":{port}")
            };
            Response::redirect(format!("https://{name}{port}{}", uri_escaped(path)))
        }
        _ => Response::status(400),
    }
}

/// `path` with every byte that may not stand in a URI (non-ASCII, controls, space) written as
/// `%XX`: the request line may carry raw UTF-8, a `Location` header must not.
fn uri_escaped(path: &str) -> Cow<'_, str> {
    if path.bytes().all(|b| b.is_ascii_graphic()) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        match b.is_ascii_graphic() {
            true => out.push(char::from(b)),
            false => out.push_str(&format!("%{b:02X}")),
        }
    }
    Cow::Owned(out)
}

/// Decides what a complete (or malformed) request head asks for; `scheme` is how the browser
/// reached the port (for the origin check).
pub fn route(head: &[u8], allowed_origins: &[String], scheme: &str) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Route::Respond(Response::status(400));
    }
    if req.method != Some("GET") {
        return Route::Respond(Response::status(405));
    }
    let path = req.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    Route::Respond(match path {
        "/" | "/index.html" => Response::ok("text/html; charset=utf-8", INDEX_HTML),
        "/flock.js" => Response::ok("text/javascript; charset=utf-8", FLOCK_JS),
        "/healthz" => Response::ok("text/plain; charset=utf-8", "ok"),
        "/metrics" => return Route::Metrics,
        "/ws" => {
            if !header("Upgrade").is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket")) {
                Response::status(426)
            } else if req.version != Some(1)
                || !header("Connection").is_some_and(|c| {
                    c.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
                || header("Sec-WebSocket-Key").is_none()
            {
                // tungstenite would refuse these too, but without an answer.
                Response::status(400)
            } else if header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
                Response::status(426)
            } else if !origin::allowed(allowed_origins, header("Origin"), header("Host"), scheme) {
                Response::status(403)
            } else {
                return Route::WebSocket;
            }
        }
        _ => Response::status(404),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(head: &str) -> u16 {
        match route(head.as_bytes(), &[], "http") {
            Route::Respond(r) => r.status,
            Route::WebSocket => 101,
            Route::Metrics => 0,
        }
    }

    #[test]
    fn routes() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status("GET /healthz?probe=1 HTTP/1.1\r\n\r\n"), 200);
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /metrics?x=1 HTTP/1.1\r\n\r\n"), 0);
        assert_eq!(status("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("POST / HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        assert_eq!(status("GET /ws HTTP/1.1\r\n\r\n"), 426);
        let ws = "GET /ws HTTP/1.1\r\nHost: f:1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(status(&format!("{ws}\r\n")), 101);
        assert_eq!(status(&format!("{ws}Origin: http://f:1\r\n\r\n")), 101);
        assert_eq!(status(&format!("{ws}Origin: http://evil:1\r\n\r\n")), 403);
        assert_eq!(
            status(&format!("{}\r\n", ws.replace("Version: 13", "Version: 8"))),
            426
        );
    }

    #[test]
    fn redirects_keep_host_and_path() {
        let location = |head: &str, port| {
            let r = redirect_to_https(head.as_bytes(), port);
            let bytes = String::from_utf8(r.to_bytes()).unwrap();
            (
                r.status,
                bytes
                    .lines()
                    .find_map(|l| l.strip_prefix("Location: ").map(str::to_owned)),
            )
        };
        assert_eq!(
            location("GET /a?b=1 HTTP/1.1\r\nHost: flock.example:80\r\n\r\n", 443),
            (308, Some("https://flock.example/a?b=1".into()))
        );
        assert_eq!(
            location("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 8443),
            (308, Some("https://[::1]:8443/".into()))
        );
        assert_eq!(location("GET / HTTP/1.1\r\n\r\n", 443).0, 400, "no Host");
        assert_eq!(
            location("GET //evil.example/ HTTP/1.1\r\nHost: f\r\n\r\n", 443).0,
            400
        );
        assert_eq!(location("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 443).0, 400);
        // Raw UTF-8 in the request line (httparse takes it) leaves percent-encoded.
        assert_eq!(
            location("GET /d\u{0497}t?x HTTP/1.1\r\nHost: f\r\n\r\n", 443),
            (308, Some("https://f/d%D2%97t?x".into()))
        );
    }

    #[test]
    fn all_values_of_a_header() {
        let head = b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: f\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\r\n";
        assert_eq!(
            header_values(head, "X-Forwarded-For"),
            ["1.1.1.1", "2.2.2.2, 3.3.3.3"]
        );
        assert!(header_values(head, "Forwarded").is_empty());
    }

    #[tokio::test]
    async fn head_is_bounded() {
        let mut long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD)).into_bytes();
        assert_eq!(read_head(&mut &long[..]).await.unwrap(), None);
        long.truncate(20);
        assert_eq!(
            read_head(&mut &long[..]).await.unwrap(),
            None,
            "closed before the end"
        );
        let ok = b"GET / HTTP/1.1\r\n\r\nrest";
        assert_eq!(read_head(&mut &ok[..]).await.unwrap().unwrap(), ok);
    }
}
