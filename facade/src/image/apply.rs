//! How an image's config becomes a container's defaults (podman's rules).

use std::collections::BTreeMap;

use rpod_storage::registry::manifest::ContainerConfig as ImageRuntimeConfig;

use crate::error::RuntimeError;

/// The command a container from this image runs: the entrypoint (`--entrypoint`, else the
/// image's; an entrypoint of one empty string means none), then the command given, else the
/// image's `Cmd` — which is not used when the user set an entrypoint.
pub fn command(
    image: &ImageRuntimeConfig,
    entrypoint: Option<&[String]>,
    cmd: &[String],
) -> Vec<String> {
    let ep: Vec<String> = match entrypoint {
        Some(e) => e.to_vec(),
        None => image.entrypoint.clone().unwrap_or_default(),
    };
    let mut out = if ep.len() == 1 && ep[0].is_empty() {
        Vec::new()
    } else {
        ep
    };
    if !cmd.is_empty() {
        out.extend(cmd.iter().cloned());
    } else if entrypoint.is_none() {
        out.extend(image.cmd.clone().unwrap_or_default());
    }
    out
}

/// The image's environment with the user's on top (same key: the user's wins; the OCI spec adds
/// a default `PATH` when neither has one).
pub fn env(image: &ImageRuntimeConfig, user: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let mut out: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for e in image.env.iter().flatten().chain(user.iter()) {
        match index.get(&key(e)) {
            Some(&i) => out[i] = e.clone(),
            None => {
                index.insert(key(e), out.len());
                out.push(e.clone());
            }
        }
    }
    out
}

/// The image's labels with the user's on top.
pub fn labels(
    image: &ImageRuntimeConfig,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = image.labels.clone().unwrap_or_default();
    out.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The image's `StopSignal` as a number (`SIGTERM`, `TERM`, `15`), if it has one.
pub fn stop_signal(image: &ImageRuntimeConfig) -> Result<Option<u32>, RuntimeError> {
    match image.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => crate::parse_signal(s).map(|n| Some(n as u32)),
    }
}

/// `-P`: the image's exposed ports (`80/tcp`) not published already, each to be published on
/// a free host port.
pub fn exposed_ports(image: &ImageRuntimeConfig, published: &[String]) -> Vec<String> {
    let already = |port: &str, proto: &str| {
        published.iter().any(|p| {
            let (spec, pr) = p.split_once('/').unwrap_or((p, "tcp"));
            pr == proto && spec.rsplit(':').next() == Some(port)
        })
    };
    image
        .exposed_ports
        .iter()
        .flatten()
        .filter_map(|(k, _)| {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            (!already(port, proto)).then(|| format!("{port}/{proto}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageRuntimeConfig {
        ImageRuntimeConfig {
            entrypoint: ep.map(v),
            cmd: cmd.map(v),
            env: Some(v(&["PATH=/bin", "A=1", "B=2"])),
            ..Default::default()
        }
    }

    #[test]
    fn command_follows_podman() {
        let img = image(Some(&["/ep", "x"]), Some(&["c1", "c2"]));
        assert_eq!(command(&img, None, &[]), v(&["/ep", "x", "c1", "c2"]));
        assert_eq!(command(&img, None, &v(&["u"])), v(&["/ep", "x", "u"]));
        // A user entrypoint drops the image's Cmd.
        assert_eq!(command(&img, Some(&v(&["/e2"])), &[]), v(&["/e2"]));
        assert_eq!(
            command(&img, Some(&v(&["/e2"])), &v(&["a"])),
            v(&["/e2", "a"])
        );
        // --entrypoint "" clears it.
        assert_eq!(command(&img, Some(&v(&[""])), &v(&["ls"])), v(&["ls"]));
        let img = image(None, Some(&["sh"]));
        assert_eq!(command(&img, None, &[]), v(&["sh"]));
        assert!(command(&image(None, None), None, &[]).is_empty());
    }

    #[test]
    fn env_merges_user_over_image() {
        let img = image(None, None);
        assert_eq!(
            env(&img, &v(&["A=9", "C=3"])),
            v(&["PATH=/bin", "A=9", "B=2", "C=3"])
        );
        let bare = ImageRuntimeConfig::default();
        assert_eq!(env(&bare, &v(&["X=1"])), v(&["X=1"]));
    }

    #[test]
    fn exposed_ports_skip_published_ones() {
        let img = ImageRuntimeConfig {
            exposed_ports: Some(
                [
                    ("80/tcp".to_owned(), serde_json::json!({})),
                    ("53/udp".to_owned(), serde_json::json!({})),
                ]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        };
        assert_eq!(exposed_ports(&img, &v(&["8080:80"])), v(&["53/udp"]));
        assert_eq!(exposed_ports(&img, &[]), v(&["53/udp", "80/tcp"]));
    }

    #[test]
    fn stop_signal_parses_names() {
        let img = ImageRuntimeConfig {
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        };
        assert_eq!(stop_signal(&img).ok().flatten(), Some(3));
    }
}
