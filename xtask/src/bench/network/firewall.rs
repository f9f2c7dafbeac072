//! iptables rules that the bench networks' plugins leave behind: finding them (by network
//! name, as the plugins' comments quote it, or by subnet) and removing them with their
//! per-network/per-container chains, never the shared chains (`CNI-FORWARD`, `CNI-ADMIN`,
//! `CNI-HOSTPORT-*`, `NETAVARK_FORWARD`, `NETAVARK-HOSTPORT-*`), which stay as they do with
//! podman.

use std::io::Write;
use std::process::{Command, Stdio};

/// The bench networks whose rules a [`leftovers`] / [`remove`] pass looks for.
pub(in crate::bench) struct Scope {
    /// Network names (each rule whose text contains one is the network's).
    pub(in crate::bench) names: &'static [&'static str],
    /// What every address of a subnet starts with, e.g. `10.82.2.`.
    pub(in crate::bench) prefixes: &'static [&'static str],
}

impl Scope {
    /// Whether the rule `line` (as `iptables-save` prints it) belongs to these networks.
    fn matches(&self, line: &str) -> bool {
        self.names
            .iter()
            .chain(self.prefixes)
            .any(|needle| line.contains(needle))
    }
}

/// For each iptables table holding rules of `scope`, the `iptables-restore --noflush` input
/// removing them.
pub(in crate::bench) fn leftovers(scope: &Scope) -> Vec<(&'static str, String)> {
    ["nat", "filter"]
        .into_iter()
        .filter_map(|table| {
            let out = Command::new("iptables-save")
                .args(["-t", table])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            removal(table, &String::from_utf8_lossy(&out.stdout), scope).map(|i| (table, i))
        })
        .collect()
}

/// Removes every rule of `scope` (see [`leftovers`]), telling which (`what` names the
/// networks); failures are warnings.
pub(in crate::bench) fn remove(scope: &Scope, what: &str) {
    for (table, input) in leftovers(scope) {
        eprintln!(
            "xtask bench: warning: removing left-over iptables rules of {what} ({table}):\n{input}"
        );
        let restored = Command::new("iptables-restore")
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(input.as_bytes())?;
                }
                child.wait()
            });
        if !restored.is_ok_and(|s| s.success()) {
            eprintln!("xtask bench: warning: iptables-restore failed");
        }
    }
}

/// Whether `chain` is one network's or one container's (`CNI-<hash>` of bridge's ipMasq,
/// `CNI-DN-<hash>` of portmap, netavark's `NETAVARK-<hash>` and `NETAVARK-DN-<hash>`), not a
/// chain the plugins share.
fn is_private_chain(chain: &str) -> bool {
    (chain.starts_with("CNI-")
        && !matches!(chain, "CNI-FORWARD" | "CNI-ADMIN")
        && !chain.starts_with("CNI-HOSTPORT-"))
        || (chain.starts_with("NETAVARK-") && !chain.starts_with("NETAVARK-HOSTPORT-"))
}

/// The `iptables-restore --noflush` input that removes from `table` (as `iptables-save -t
/// table` printed it: `save`) the rules of `scope` and the private chains they jump to
/// ([`is_private_chain`]); `None` if there is none.
pub(in crate::bench) fn removal(table: &str, save: &str, scope: &Scope) -> Option<String> {
    let rules: Vec<&str> = save
        .lines()
        .filter(|l| l.starts_with("-A ") && scope.matches(l))
        .collect();
    if rules.is_empty() {
        return None;
    }
    let mut chains: Vec<&str> = rules
        .iter()
        .filter_map(|rule| {
            let mut words = rule.split_whitespace();
            words.find(|w| *w == "-j")?;
            words.next()
        })
        .filter(|chain| is_private_chain(chain))
        .collect();
    chains.sort_unstable();
    chains.dedup();
    let mut input = format!("*{table}\n");
    for rule in rules {
        let chain = rule.split_whitespace().nth(1).unwrap_or_default();
        if !chains.contains(&chain) {
            input.push_str(&format!("-D {}\n", &rule[3..]));
        }
    }
    for chain in chains {
        input.push_str(&format!("-F {chain}\n-X {chain}\n"));
    }
    input.push_str("COMMIT\n");
    Some(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOOR: Scope = Scope {
        names: &["rpod-bench-floor-net"],
        prefixes: &["10.82.2."],
    };

    #[test]
    fn cni_leftovers_are_found() {
        let save = "*nat\n:CNI-abc - [0:0]\n:CNI-HOSTPORT-DNAT - [0:0]\n\
            -A POSTROUTING -s 10.82.2.5/32 -m comment --comment \"name: \\\"rpod-bench-floor-net\\\" id: \\\"x\\\"\" -j CNI-abc\n\
            -A POSTROUTING -s 10.88.0.5/32 -j CNI-other\n\
            -A CNI-abc -d 10.82.2.0/24 -j ACCEPT\n\
            -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"rpod-bench-floor-net\\\" id: \\\"x\\\"\" -j CNI-DN-def\n\
            COMMIT\n";
        let input = removal("nat", save, &FLOOR).unwrap_or_default();
        assert!(
            input.starts_with("*nat\n-D POSTROUTING -s 10.82.2.5/32 "),
            "{input}"
        );
        assert!(input.contains("-D CNI-HOSTPORT-DNAT -p tcp"), "{input}");
        assert!(!input.contains("-D CNI-abc"), "{input}");
        assert!(input.contains("-F CNI-DN-def\n-X CNI-DN-def\n-F CNI-abc\n-X CNI-abc\nCOMMIT\n"));
        assert!(!input.contains("10.88"));
        assert_eq!(
            removal("filter", "*filter\n-A FORWARD -j CNI-FORWARD\n", &FLOOR),
            None
        );
    }

    #[test]
    fn netavark_leftovers_are_found() {
        // What netavark 1.4 adds for one container with `-p 127.0.0.1:28483:80`.
        let scope = Scope {
            names: &["rpod-bench-netavark"],
            prefixes: &["10.82.3."],
        };
        let nat = "*nat\n\
            -A POSTROUTING -s 10.82.3.0/24 -j NETAVARK-4907B521B0EA6\n\
            -A POSTROUTING -j NETAVARK-HOSTPORT-MASQ\n\
            -A NETAVARK-4907B521B0EA6 -d 10.82.3.0/24 -j ACCEPT\n\
            -A NETAVARK-DN-4907B521B0EA6 -d 127.0.0.1/32 -p tcp -m tcp --dport 28483 -j DNAT --to-destination 10.82.3.5:80\n\
            -A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 28483 -m comment --comment \"dnat name: rpod-bench-netavark id: b8ab\" -j NETAVARK-DN-4907B521B0EA6\n\
            COMMIT\n";
        let input = removal("nat", nat, &scope).unwrap_or_default();
        assert_eq!(
            input,
            "*nat\n-D POSTROUTING -s 10.82.3.0/24 -j NETAVARK-4907B521B0EA6\n\
             -D NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 28483 -m comment --comment \
             \"dnat name: rpod-bench-netavark id: b8ab\" -j NETAVARK-DN-4907B521B0EA6\n\
             -F NETAVARK-4907B521B0EA6\n-X NETAVARK-4907B521B0EA6\n\
             -F NETAVARK-DN-4907B521B0EA6\n-X NETAVARK-DN-4907B521B0EA6\nCOMMIT\n"
        );
        // The shared forward chain keeps existing; only the network's rules go.
        let filter = "*filter\n-A FORWARD -j NETAVARK_FORWARD\n\
            -A NETAVARK_FORWARD -s 10.82.3.0/24 -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            removal("filter", filter, &scope).as_deref(),
            Some("*filter\n-D NETAVARK_FORWARD -s 10.82.3.0/24 -j ACCEPT\nCOMMIT\n")
        );
    }
}
