//! The registry client against a tiny scripted HTTP server on loopback: Bearer token auth and hostile
//! answers that a real registry does not give (oversized manifest, wrong digest, schema 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rpod_storage::registry::{manifest, Client, ClientOptions, RegistryError, MAX_MANIFEST_SIZE};

/// Serves forever on a loopback port (the thread dies with the test process); `handler` gets
/// (request line, Authorization value) and returns (status, extra headers, body). Requests are logged.
fn serve(
    handler: impl Fn(&str, &str, u16) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + 'static,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                    auth = h[h.len() - v.len()..].trim().to_owned();
                }
            }
            let request = line.trim().to_owned();
            log2.lock().unwrap().push(format!("{request} [{auth}]"));
            let (status, headers, body) = handler(&request, &auth, port);
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: {}\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (port, log)
}

fn client(port: u16, credentials: Option<(&str, &str)>) -> Client {
    Client::new(
        &format!("127.0.0.1:{port}"),
        ClientOptions {
            insecure_http: true,
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn bearer_token_is_fetched_once_per_scope() {
    let (port, log) = serve(|req, auth, port| {
        if req.starts_with("GET /token?") {
            // "dXNlcjpwYXNz" is user:pass.
            return if auth == "Basic dXNlcjpwYXNz" {
                (200, vec![], br#"{"token":"tok123"}"#.to_vec())
            } else {
                (401, vec![], b"{}".to_vec())
            };
        }
        if auth != "Bearer tok123" {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:r/x:pull""#
            );
            return (
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .to_vec(),
            );
        }
        (
            404,
            vec![],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec(),
        )
    });
    let c = client(port, Some(("user", "pass")));
    for _ in 0..2 {
        let err = c.get_manifest("r/x", "v1").unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    }
    let log = log.lock().unwrap().clone();
    let tokens: Vec<_> = log.iter().filter(|l| l.starts_with("GET /token")).collect();
    assert_eq!(tokens.len(), 1, "{log:#?}");
    assert!(
        tokens[0].contains("service=fake&scope=repository%3Ar%2Fx%3Apull"),
        "{log:#?}"
    );

    let err = client(port, Some(("user", "nope")))
        .get_manifest("r/x", "v1")
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}

#[test]
fn hostile_manifests_are_refused() {
    let (port, _log) = serve(|req, _, _| {
        let oci = ("Content-Type".to_owned(), manifest::OCI_MANIFEST.to_owned());
        if req.contains("/manifests/huge") {
            let body = vec![b' '; usize::try_from(MAX_MANIFEST_SIZE).unwrap() + 1];
            return (200, vec![oci], body);
        }
        if req.contains("/manifests/lying") {
            let d = format!("sha256:{}", "0".repeat(64));
            return (
                200,
                vec![oci, ("Docker-Content-Digest".into(), d)],
                b"{}".to_vec(),
            );
        }
        if req.contains("/manifests/sha256:") {
            return (200, vec![oci], b"{}".to_vec());
        }
        let v1 = (
            "Content-Type".to_owned(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws".to_owned(),
        );
        (200, vec![v1], b"{}".to_vec())
    });
    let c = client(port, None);
    let err = c.get_manifest("r/x", "huge").unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { .. }),
        "{err}"
    );
    let err = c.get_manifest("r/x", "lying").unwrap_err();
    assert!(err.is_digest_mismatch(), "{err}");
    let by_digest = format!("sha256:{}", "1".repeat(64));
    let err = c.get_manifest("r/x", &by_digest).unwrap_err();
    assert!(err.is_digest_mismatch(), "{err}");
    let err = c.get_manifest("r/x", "old").unwrap_err();
    assert!(
        matches!(err, RegistryError::UnsupportedMediaType { .. }),
        "{err}"
    );
}
