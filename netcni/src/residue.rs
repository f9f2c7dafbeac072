//! Rules a plugin left behind because an earlier run of it was killed half-way: the bridge
//! plugin's ipMasq chain (`CNI-<hash>`, rules commented `name: "<net>" id: "<id>"`) survives a
//! DEL retried after a killed DEL, since the retry finds no interface and so no addresses.
//! Swept by the container ID in the rules' comments, only after such an interrupted run.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::plugin::PLUGIN_PATH_ENV;
use crate::NetError;

/// Chains the plugins create per container: `CNI-` (ipMasq) or `CNI-DN-`/`CNI-SN-` (portmap)
/// followed by a hash; never the shared `CNI-FORWARD`, `CNI-ADMIN`, `CNI-HOSTPORT-*`.
fn per_container_chain(name: &str) -> bool {
    let hash = name
        .strip_prefix("CNI-DN-")
        .or_else(|| name.strip_prefix("CNI-SN-"))
        .or_else(|| name.strip_prefix("CNI-"));
    hash.is_some_and(|h| h.len() >= 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The ipMasq chain the bridge plugin makes for `network` and `container_id`
/// (containernetworking/plugins `utils.FormatChainName`: `CNI-` + sha512 hex, 28 characters).
pub(crate) fn masquerade_chain(network: &str, container_id: &str) -> String {
    use sha2::{Digest, Sha512};
    let sum = Sha512::digest(format!("{network}{container_id}").as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

/// The restore script removing every nat rule of `listing` (`iptables -t nat -S`) whose
/// comment names `container_id`, the per-container chains they are in or jump to, and the
/// ipMasq chain of `network` (which a kill between its flush and its deletion leaves empty,
/// with no comment to find it by).
fn sweep_script(listing: &str, network: &str, container_id: &str) -> Option<String> {
    let needle = format!("id: \\\"{container_id}\\\"");
    let mut deletes = Vec::new();
    let mut chains: Vec<String> = Vec::new();
    let masq = masquerade_chain(network, container_id);
    if listing.lines().any(|l| l == format!("-N {masq}")) {
        chains.push(masq);
    }
    for line in listing.lines().filter(|l| l.contains(&needle)) {
        let Some(rest) = line.strip_prefix("-A ") else {
            continue;
        };
        let chain = rest.split_whitespace().next().unwrap_or_default();
        let target = rest
            .split_whitespace()
            .skip_while(|w| *w != "-j")
            .nth(1)
            .unwrap_or_default();
        for c in [chain, target] {
            if per_container_chain(c) && !chains.iter().any(|x| x == c) {
                chains.push(c.to_owned());
            }
        }
        if !per_container_chain(chain) {
            deletes.push(format!("-D {rest}"));
        }
    }
    if deletes.is_empty() && chains.is_empty() {
        return None;
    }
    let mut script = String::from("*nat\n");
    for d in deletes {
        script.push_str(&d);
        script.push('\n');
    }
    // Flushed first, then deleted: a chain can only go once nothing jumps to it.
    for c in &chains {
        script.push_str(&format!("-F {c}\n"));
    }
    for c in &chains {
        script.push_str(&format!("-X {c}\n"));
    }
    script.push_str("COMMIT\n");
    Some(script)
}

fn fw_err(msg: String) -> NetError {
    NetError::Firewall {
        backend: "iptables".into(),
        msg,
    }
}

/// Removes the nat rules and per-container chains that name `container_id`, and the ipMasq
/// chain of `network` for it (IPv4 and, with `ipv6`, IPv6). Returns how many rules and chains
/// went.
pub fn sweep_container_rules(
    network: &str,
    container_id: &str,
    ipv6: bool,
) -> Result<usize, NetError> {
    let mut removed = 0;
    let tools: &[(&str, &str)] = if ipv6 {
        &[
            ("iptables", "iptables-restore"),
            ("ip6tables", "ip6tables-restore"),
        ]
    } else {
        &[("iptables", "iptables-restore")]
    };
    for (list, restore) in tools {
        let out = Command::new(list)
            .args(["-w", "-t", "nat", "-S"])
            .env("PATH", PLUGIN_PATH_ENV)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fw_err(format!("cannot run {list}: {e}")))?;
        if !out.status.success() {
            // No nat table (e.g. ip6 never used): nothing to sweep.
            continue;
        }
        let listing = String::from_utf8_lossy(&out.stdout);
        let Some(script) = sweep_script(&listing, network, container_id) else {
            continue;
        };
        removed += script.lines().filter(|l| l.starts_with('-')).count();
        tracing::warn!(container = %container_id, rules = %script.trim(), "removing CNI rules left behind (an interrupted run, or a namespace already gone)");
        let mut child = Command::new(restore)
            .args(["-w", "--noflush"])
            .env("PATH", PLUGIN_PATH_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fw_err(format!("cannot run {restore}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| fw_err(format!("writing to {restore}: {e}")))?;
        }
        let done = child
            .wait_with_output()
            .map_err(|e| fw_err(format!("waiting for {restore}: {e}")))?;
        if !done.status.success() {
            return Err(fw_err(format!(
                "{restore} failed ({}): {}",
                done.status,
                String::from_utf8_lossy(&done.stderr).trim()
            )));
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "abc123";

    #[test]
    fn sweeps_only_the_containers_rules_and_chains() {
        let listing = concat!(
            "-P POSTROUTING ACCEPT\n",
            "-N CNI-0123456789abcdef01234567\n",
            "-N CNI-HOSTPORT-DNAT\n",
            "-A POSTROUTING -s 10.83.0.5/32 -m comment --comment \"name: \\\"n\\\" id: \\\"abc123\\\"\" -j CNI-0123456789abcdef01234567\n",
            "-A POSTROUTING -s 10.83.0.6/32 -m comment --comment \"name: \\\"n\\\" id: \\\"other\\\"\" -j CNI-fedcba9876543210fedcba98\n",
            "-A CNI-0123456789abcdef01234567 -d 10.83.0.0/24 -m comment --comment \"name: \\\"n\\\" id: \\\"abc123\\\"\" -j ACCEPT\n",
            "-A CNI-HOSTPORT-DNAT -m comment --comment \"other\" -j ACCEPT\n",
        );
        let script = sweep_script(listing, "n", ID).unwrap_or_default();
        assert_eq!(
            script,
            concat!(
                "*nat\n",
                "-D POSTROUTING -s 10.83.0.5/32 -m comment --comment \"name: \\\"n\\\" id: \\\"abc123\\\"\" -j CNI-0123456789abcdef01234567\n",
                "-F CNI-0123456789abcdef01234567\n",
                "-X CNI-0123456789abcdef01234567\n",
                "COMMIT\n"
            )
        );
        assert!(sweep_script(listing, "n", "nobody").is_none());
        // An empty ipMasq chain is found by its name alone.
        let empty = format!("-N {}\n", masquerade_chain("n", "gone"));
        let script = sweep_script(&empty, "n", "gone").unwrap_or_default();
        assert!(
            script.contains(&format!("-X {}", masquerade_chain("n", "gone"))),
            "{script}"
        );
        assert!(!per_container_chain("CNI-HOSTPORT-DNAT"));
        assert!(!per_container_chain("CNI-FORWARD"));
        assert!(per_container_chain("CNI-DN-0123456789abcdef0123"));
    }

    #[test]
    fn masquerade_chain_is_the_plugins_name() {
        // Seen on this host: network rt3net, container 0ff1dda8…
        assert_eq!(
            masquerade_chain(
                "rt3net",
                "0ff1dda83cc386a977f4ec91f54254ca74282ad086bd83c5f1bae7e6a17b3f07"
            ),
            "CNI-58736cc94a189a70a2c589f3"
        );
    }
}
