//! The record encoding: [`encode`] writes the compact format ([`COMPACT_V1`]), [`decode`] reads it and the
//! JSON records of rpod-state/1 databases. The golden-bytes tests here guard the layout.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ReadTables;
use crate::error::{DecodeError, Result, StateError};

/// First byte of a record in the compact encoding: MessagePack with each record as an array of its
/// fields in declaration order (no field names). JSON records (rpod-state/1) start with `{`, so
/// both decode. Every record has `#[serde(default)]`, so a field appended at the end of a record
/// reads as its default from records written before it existed; reordering, removing or retyping
/// fields needs a new format byte and a decoder for the old layout (the `compact_layout_is_stable`
/// test catches accidental changes).
pub(crate) const COMPACT_V1: u8 = 1;

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![COMPACT_V1];
    match rmp_serde::encode::write(&mut out, v) {
        Ok(()) => out,
        // Writing plain structs into a Vec does not fail; JSON (which the reader also
        // understands) is the fallback rather than a panic.
        Err(_) => serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

pub(crate) fn decode<T: DeserializeOwned, R: ReadTables + ?Sized>(
    r: &R,
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T> {
    let decoded = match bytes.split_first() {
        Some((&COMPACT_V1, rest)) => rmp_serde::from_slice(rest).map_err(DecodeError::from),
        _ => serde_json::from_slice(bytes).map_err(DecodeError::from),
    };
    decoded.map_err(|source| StateError::Corrupt {
        path: r.path().to_path_buf(),
        what: what(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use std::borrow::Cow;
    use std::path::Path;

    use super::*;
    use crate::logic::{ScanFn, Table};
    use crate::records::{
        ContainerConfig, ContainerState, ContainerStatus, ExecSession, Mount, PodConfig, PodState,
        PortMapping, Rlimit,
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Every field set, so that each one shows up in the encoding.
    fn full_records() -> (ContainerConfig, ContainerState, PodConfig, PodState) {
        let mut c = ContainerConfig::new("c1", "web");
        c.namespace = "ns".into();
        c.pod = Some("p1".into());
        c.lock_id = 7;
        c.rootfs = "/r".into();
        c.command = vec!["sh".into(), "-c".into()];
        c.env = vec!["A=1".into()];
        c.working_dir = "/w".into();
        c.user = "1:2".into();
        c.hostname = "h".into();
        c.labels = BTreeMap::from([("k".into(), "v".into())]);
        c.ipc_ns_ctr = Some("i".into());
        c.mount_ns_ctr = Some("m".into());
        c.net_ns_ctr = Some("n".into());
        c.pid_ns_ctr = Some("p".into());
        c.user_ns_ctr = Some("u".into());
        c.uts_ns_ctr = Some("t".into());
        c.cgroup_ns_ctr = Some("g".into());
        c.dependencies = vec!["d".into()];
        c.port_mappings = vec![PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        c.networks = vec!["net".into()];
        c.stop_signal = 15;
        c.stop_timeout = 10;
        c.log_path = "/l".into();
        c.created = at(1_700_000_000);
        c.rlimits = vec![Rlimit {
            kind: "RLIMIT_NOFILE".into(),
            soft: 1024,
            hard: 2048,
        }];
        c.mounts = vec![Mount {
            destination: "/d".into(),
            kind: "bind".into(),
            source: "/s".into(),
            options: vec!["ro".into()],
        }];
        c.is_infra = true;
        c.auto_remove = true;
        c.terminal = true;
        let s = ContainerState {
            status: ContainerStatus::Exited,
            pid: 42,
            conmon_pid: 41,
            exit_code: 137,
            started: Some(at(1_700_000_001)),
            finished: Some(at(1_700_000_002)),
            oom_killed: true,
            netns_path: "/run/netns/x".into(),
            network_results: vec![serde_json::json!({"ip": "10.0.0.2"})],
            exec_sessions: BTreeMap::from([(
                "e1".into(),
                ExecSession {
                    command: vec!["ls".into()],
                    pid: 43,
                },
            )]),
        };
        let mut p = PodConfig::new("p1", "pod");
        p.namespace = "ns".into();
        p.lock_id = 3;
        p.labels = BTreeMap::from([("a".into(), "b".into())]);
        p.created = at(1_700_000_003);
        p.cgroup_parent = "/cg".into();
        p.infra = true;
        p.shared_namespaces = vec!["net".into()];
        let ps = PodState {
            infra_container_id: "c1".into(),
            cgroup_path: "/cg/p1".into(),
        };
        (c, s, p, ps)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn compact_layout_is_stable() {
        // If this fails, a record's fields changed. A field appended at the end only lengthens
        // that record's array (older records read it as its default): update GOLDEN. Anything
        // else (reordering, removing, retyping) would misread existing databases: add a format
        // byte and a decoder for the old layout first.
        let (c, s, p, ps) = full_records();
        let got = [
            hex(&encode(&c)),
            hex(&encode(&s)),
            hex(&encode(&p)),
            hex(&encode(&ps)),
        ];
        assert_eq!(got, GOLDEN);
    }

    /// The encodings of [`full_records`] in format [`COMPACT_V1`].
    const GOLDEN: [&str; 4] = [
        "01dc0029a26331a3776562a26e73a2703107a22f7292a27368a22d6391a3413d31a22f77a3313a32a16881a16ba176a169a16da16ea170a175a174a16791a1649194a93132372e302e302e31cd1f9050a374637091a36e65740f0aa22f6ccf17979cfe362a00009193ad524c494d49545f4e4f46494c45cd0400cd08009194a22f64a462696e64a22f7391a2726fc3c3c3a0a090909090c2a0a0a0",
        "019aa66578697465642a29cc89cf17979cfe71c4ca00cf17979cfead5f9400c3ac2f72756e2f6e65746e732f789181a26970a831302e302e302e3281a265319291a26c732b",
        "0199a27031a3706f64a26e730381a161a162cf17979cfee8fa5e00a32f6367c391a36e6574",
        "0192a26331a62f63672f7031",
    ];

    #[test]
    fn compact_and_json_records_round_trip() {
        let (c, s, p, ps) = full_records();
        let t = &NoTables;
        {
            fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
                let d: T =
                    decode(&NoTables, &encode(v), String::new).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&d, v);
            }
            round_trip(&c);
            round_trip(&s);
            round_trip(&p);
            round_trip(&ps);
            // rpod-state/1 records (JSON) still decode, including the opaque JSON values.
            let json = serde_json::to_vec(&s).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json.first(), Some(&b'{'));
            let d: ContainerState = decode(t, &json, String::new).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(d, s);
            // Compact records are much smaller.
            assert!(encode(&c).len() * 2 < serde_json::to_vec(&c).unwrap_or_default().len());
            // Garbage is a Corrupt error, whichever format it claims to be.
            for bad in [&[COMPACT_V1, 0xff, 0xff][..], b"{nope", b""] {
                match decode::<ContainerState, _>(t, bad, || "x".into()) {
                    Err(e) => assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}"),
                    Ok(v) => panic!("{bad:?} decoded as {v:?}"),
                }
            }
        }
    }

    #[test]
    fn fields_appended_later_read_as_defaults() {
        // A record written before `oom_killed` and the fields after it existed.
        #[derive(Serialize)]
        struct OldState {
            status: ContainerStatus,
            pid: i32,
            conmon_pid: i32,
            exit_code: i32,
            started: Option<i64>,
            finished: Option<i64>,
        }
        let old = OldState {
            status: ContainerStatus::Exited,
            pid: 0,
            conmon_pid: 0,
            exit_code: 3,
            started: None,
            finished: Some(5),
        };
        let got: ContainerState =
            decode(&NoTables, &encode(&old), String::new).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.status, ContainerStatus::Exited);
        assert_eq!(got.exit_code, 3);
        assert_eq!(
            got.finished,
            Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(5))
        );
        assert!(!got.oom_killed);
        assert!(got.exec_sessions.is_empty());
    }

    #[test]
    fn a_config_written_before_terminal_existed_reads_false() {
        // GOLDEN[0] before `terminal` was appended to ContainerConfig (one element shorter).
        let before = "01dc001ea26331a3776562a26e73a2703107a22f7292a27368a22d6391a3413d31a22f77a3313a32a16881a16ba176a169a16da16ea170a175a174a16791a1649194a93132372e302e302e31cd1f9050a374637091a36e65740f0aa22f6ccf17979cfe362a00009193ad524c494d49545f4e4f46494c45cd0400cd08009194a22f64a462696e64a22f7391a2726fc3c3";
        let bytes: Vec<u8> = (0..before.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&before[i..i + 2], 16).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let got: ContainerConfig =
            decode(&NoTables, &bytes, String::new).unwrap_or_else(|e| panic!("{e}"));
        let (mut want, _, _, _) = full_records();
        want.terminal = false;
        assert_eq!(got, want);
    }

    /// Only a path for error messages; `decode` reads nothing else.
    struct NoTables;

    impl ReadTables for NoTables {
        fn path(&self) -> &Path {
            Path::new("<test>")
        }
        fn get(&self, _: Table, _: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
            Ok(None)
        }
        fn scan_prefix(&self, _: Table, _: &[u8], _: &mut ScanFn<'_>) -> Result<()> {
            Ok(())
        }
        fn len(&self, _: Table) -> Result<u64> {
            Ok(0)
        }
    }
}
