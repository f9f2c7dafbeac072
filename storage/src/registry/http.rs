//! Request plumbing of [`Client`]: sending, answering `401` challenges, classifying failures.

use std::io::{self, Read};
use std::sync::atomic::Ordering;

use ureq::http::{self, Response};
use ureq::Body;

use super::auth::{basic_header, parse_challenge, query_escape, Challenge};
use super::client::{header, Client, Result};
use super::error::{ErrorEntry, RegistryError};

/// Error bodies and token answers are read up to this size.
const MAX_ERROR_BODY: u64 = 64 * 1024;

impl Client {
    /// The `Authorization` value cached for `scope`.
    pub(super) fn cached_auth(&self, scope: &str) -> Option<String> {
        if let Ok(tokens) = self.tokens.lock() {
            if let Some(t) = tokens.get(scope) {
                return Some(format!("Bearer {t}"));
            }
        }
        match &self.credentials {
            Some((u, p)) if self.use_basic.load(Ordering::Relaxed) => Some(basic_header(u, p)),
            _ => None,
        }
    }

    pub(super) fn send(
        &self,
        method: &str,
        url: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>> {
        let mut request = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(a) = auth {
            request = request.header("Authorization", a);
        }
        let result = match body {
            Some(b) => request.body(b).map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let resp = result
            .map_err(|e| transport(method, url, e.into()))?
            .map_err(|e| classify(method, url, e))?;
        tracing::trace!(
            method,
            url,
            status = resp.status().as_u16(),
            "registry request"
        );
        Ok(resp)
    }

    /// Sends a replayable request, answering one `401` challenge.
    pub(super) fn request(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response<Body>> {
        let auth = self.cached_auth(scope);
        let resp = self.send(method, url, auth.as_deref(), headers, body)?;
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let challenge = header(&resp, "www-authenticate").and_then(parse_challenge);
        let new_auth = match (challenge, &self.credentials) {
            (Some(Challenge::Basic), Some((u, p))) => {
                if auth.is_some() {
                    return Err(self.auth_failed(resp));
                }
                self.use_basic.store(true, Ordering::Relaxed);
                basic_header(u, p)
            }
            (
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: challenge_scope,
                }),
                _,
            ) => {
                let wanted = challenge_scope.unwrap_or_else(|| scope.to_owned());
                let token = self.fetch_token(&realm, service.as_deref(), &wanted)?;
                if let Ok(mut tokens) = self.tokens.lock() {
                    tokens.insert(scope.to_owned(), token.clone());
                }
                format!("Bearer {token}")
            }
            _ => return Err(self.auth_failed(resp)),
        };
        let resp = self.send(method, url, Some(&new_auth), headers, body)?;
        if resp.status().as_u16() == 401 {
            return Err(self.auth_failed(resp));
        }
        Ok(resp)
    }

    pub(super) fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String> {
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in [("service", service), ("scope", Some(scope))] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                url.push(sep);
                url.push_str(&format!("{k}={}", query_escape(v)));
                sep = '&';
            }
        }
        let auth = self.credentials.as_ref().map(|(u, p)| basic_header(u, p));
        let resp = self.send("GET", &url, auth.as_deref(), &[], None)?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(self.auth_failed(resp));
        }
        let token_err = |reason: String| RegistryError::Token {
            realm: realm.to_owned(),
            reason,
        };
        if status != 200 {
            let (_, body) = read_error_body(resp);
            return Err(token_err(format!("status {status}: {body}")));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let raw = resp
            .into_body()
            .into_with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_vec()
            .map_err(|e| token_err(e.to_string()))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&raw).map_err(|e| token_err(e.to_string()))?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_err("answer has no token".into()))
    }

    pub(super) fn auth_failed(&self, resp: Response<Body>) -> RegistryError {
        let (errors, body) = read_error_body(resp);
        let message = errors.first().map(|e| e.message.clone()).unwrap_or(body);
        let registry = self.base.clone();
        if self.credentials.is_some() {
            RegistryError::Unauthorized { registry, message }
        } else {
            RegistryError::AuthRequired { registry, message }
        }
    }

    pub(super) fn not_found(
        &self,
        kind: &'static str,
        repo: &str,
        reference: &str,
        resp: Response<Body>,
    ) -> RegistryError {
        let (_, body) = read_error_body(resp);
        RegistryError::NotFound {
            kind,
            registry: self.base.clone(),
            repository: repo.to_owned(),
            reference: reference.to_owned(),
            message: body,
        }
    }

    pub(super) fn unexpected(
        &self,
        method: &str,
        url: &str,
        resp: Response<Body>,
    ) -> RegistryError {
        if resp.status().as_u16() == 401 {
            return self.auth_failed(resp);
        }
        let status = resp.status().as_u16();
        let (errors, body) = read_error_body(resp);
        RegistryError::Registry {
            method: method.to_owned(),
            url: url.to_owned(),
            status,
            errors,
            body,
        }
    }
}

/// Reads an error body (bounded) and parses the standard `{"errors":[…]}` shape when it is that.
pub(super) fn read_error_body(resp: Response<Body>) -> (Vec<ErrorEntry>, String) {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    let mut raw = Vec::new();
    let mut reader = resp
        .into_body()
        .into_with_config()
        .limit(MAX_ERROR_BODY)
        .reader();
    if let Err(e) = reader.read_to_end(&mut raw) {
        tracing::debug!(error = %e, "error body incomplete");
    }
    let errors = serde_json::from_slice::<Errors>(&raw)
        .map(|e| e.errors)
        .unwrap_or_default();
    (errors, String::from_utf8_lossy(&raw).trim_end().to_owned())
}

pub(super) fn transport(method: &str, url: &str, source: ureq::Error) -> RegistryError {
    RegistryError::Transport {
        method: method.to_owned(),
        url: url.to_owned(),
        source,
    }
}

/// Connection-level failures become [`RegistryError::Connect`], the rest [`RegistryError::Transport`].
pub(super) fn classify(method: &str, url: &str, source: ureq::Error) -> RegistryError {
    let connect = match &source {
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Timeout(_)
        | ureq::Error::Tls(_) => true,
        // rustls reports a failed handshake (e.g. a plain-HTTP server answering the ClientHello)
        // as an I/O error of kind InvalidData: a connection-level failure too, so that an
        // insecure registry falls back to plain HTTP.
        ureq::Error::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NotConnected
                | io::ErrorKind::TimedOut
                | io::ErrorKind::InvalidData
        ),
        _ => false,
    };
    if connect {
        RegistryError::Connect {
            url: url.to_owned(),
            source,
        }
    } else {
        transport(method, url, source)
    }
}
