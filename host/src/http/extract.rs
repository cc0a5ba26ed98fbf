//! What handlers take from a request: a JSON body within its limit ([`JsonBody`]), the
//! client's address ([`ClientAddr`]) and a live session ([`Authed`]); and the cookie rules
//! ([`WebPolicy`]).

use super::error::ApiError;
use crate::service::Service;
use crate::store::{Person, Session};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A request body type: its size limit and the shape named in errors.
pub(crate) trait RequestBody: DeserializeOwned {
    /// The largest honest request, with room for JSON escaping.
    const MAX_BYTES: usize;
    const SHAPE: &'static str;
}

/// A JSON object body of type `T`. Anything else is refused before it is parsed: a body that
/// isn't `application/json` gets 415 (so a cross-site form can't post one), a body over
/// `T::MAX_BYTES` 413, and a body that isn't a JSON object of the right shape 400 naming what
/// is wrong and where.
pub(crate) struct JsonBody<T>(pub T);

impl<T: RequestBody> FromRequest<Arc<Service>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<Service>) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "send the body as Content-Type: application/json, a JSON object {}",
                    T::SHAPE
                ),
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} bytes", T::MAX_BYTES),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > T::MAX_BYTES as u64) {
            return Err(too_large());
        }
        let read = axum::body::to_bytes(req.into_body(), T::MAX_BYTES);
        let bytes = tokio::time::timeout(state.settings().host.body_timeout, read)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the request body did not arrive in time",
                )
            })?
            .map_err(|e| {
                let inner = e.into_inner();
                if inner
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    too_large()
                } else {
                    ApiError::bad_request("the request body could not be read")
                }
            })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let bom = bytes.starts_with(&[0xEF, 0xBB, 0xBF]);
        if first != Some(b'{') || bom {
            return Err(ApiError::bad_request(format!(
                "expected a JSON object {}",
                T::SHAPE
            )));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request(format!("the body is not a JSON object {}: {e}", T::SHAPE))
        })
    }
}

/// `Content-Type: application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy
/// (`Host:TrustedProxies`), the right-most address in `X-Forwarded-For` that is not itself a
/// trusted proxy.
pub(crate) struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<Service>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Service>) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::bad_request("no peer address"))?;
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.settings().host.trusted_proxies,
        )))
    }
}

/// See [`ClientAddr`]. A header that doesn't parse leaves the last trusted hop as the client.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// How cookies are named and flagged, and whether HSTS is sent.
///
/// Cookies are `Secure` with `__Host-` names unless the portal is reached over plain http on
/// loopback (a developer's machine), where browsers would drop `Secure` cookies.
#[derive(Debug, Clone)]
pub(crate) struct WebPolicy {
    pub secure: bool,
    pub hsts: bool,
    pub session_cookie: &'static str,
    pub csrf_cookie: &'static str,
}

/// The CSRF header requests that change state with the session cookie must send.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

impl WebPolicy {
    pub(crate) fn from_settings(settings: &crate::config::Settings) -> Self {
        // Served over TLS directly, the portal is https whatever PublicUrl says.
        let https = settings.host.tls.is_some()
            || settings
                .host
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        let loopback = match settings.host.public_url.as_deref() {
            Some(url) => url_host_is_loopback(url),
            None => settings.listen.ip().is_loopback(),
        };
        let secure = https || !loopback;
        Self {
            secure,
            hsts: https,
            session_cookie: if secure {
                "__Host-prp_session"
            } else {
                "prp_session"
            },
            csrf_cookie: if secure {
                "__Host-prp_csrf"
            } else {
                "prp_csrf"
            },
        }
    }

    /// A cookie for the whole site, `SameSite=Strict`.
    pub(crate) fn cookie(
        &self,
        name: &'static str,
        value: String,
        max_age: i64,
        http_only: bool,
    ) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .same_site(SameSite::Strict)
            .http_only(http_only)
            .secure(self.secure)
            .max_age(time::Duration::seconds(max_age.max(0)))
            .build()
    }
}

fn url_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where a request's session token came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Bearer,
    Cookie,
}

/// A request's live session and its person (who still exists and is active). Cookie requests
/// that change state must carry the session's CSRF token.
pub(crate) struct Authed {
    pub session: Session,
    pub person: Person,
}

impl FromRequestParts<Arc<Service>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<Service>) -> Result<Self, ApiError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let policy = state.web();
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| (t.trim().to_owned(), Via::Bearer));
        let (token, via) = bearer
            .or_else(|| {
                jar.get(policy.session_cookie)
                    .map(|c| (c.value().to_owned(), Via::Cookie))
            })
            .ok_or_else(ApiError::unauthorized)?;
        let store = state.store();
        let session = store
            .session(&token, state.idle_seconds())
            .await
            .map_err(|e| {
                tracing::error!("session lookup failed: {e}");
                ApiError::unavailable()
            })?
            .ok_or_else(ApiError::unauthorized)?;
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via == Via::Cookie && changes_state {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session.csrf_matches(sent) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "This request has no valid CSRF token for its session: send X-CSRF-Token with the csrf_token the login answered.",
                ));
            }
        }
        match store.person(&session.person_uid).await {
            Ok(Some(person)) if !person.inactive => Ok(Self { session, person }),
            Ok(_) => Err(ApiError::unauthorized()),
            Err(e) => {
                tracing::error!("person lookup failed: {e}");
                Err(ApiError::unavailable())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        assert_eq!(client_ip(peer, &h, &[proxy]), peer, "untrusted peer");
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A client can't prepend a fake address in front of the proxy's own entry.
        h.insert("x-forwarded-for", "1.1.1.1, 203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &[proxy]), proxy);
    }

    #[test]
    fn served_tls_makes_the_portal_https() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appsettings.json");
        let policy = |host: &str| {
            std::fs::write(&path, format!(r#"{{"Host":{host}}}"#)).unwrap();
            let env = crate::config::Environment::from_process();
            WebPolicy::from_settings(&crate::config::load(&path, &env).unwrap().settings)
        };
        // Plain http on loopback: a developer's machine.
        let dev = policy(r#"{"Listen":"127.0.0.1:8080"}"#);
        assert!(!dev.secure && !dev.hsts);
        // The same with a certificate, and no PublicUrl: https.
        let tls =
            policy(r#"{"Listen":"127.0.0.1:8443","Certificate":"c.pem","PrivateKey":"k.pem"}"#);
        assert!(tls.secure && tls.hsts);
        assert_eq!(tls.session_cookie, "__Host-prp_session");
    }

    #[test]
    fn loopback_urls() {
        assert!(url_host_is_loopback("http://127.0.0.1:8080"));
        assert!(url_host_is_loopback("http://localhost"));
        assert!(url_host_is_loopback("http://[::1]:80/x"));
        assert!(!url_host_is_loopback("http://portal.example.com"));
    }
}
