//! conmon k8s-file logs: `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{OciError, Result};

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    fn index(self) -> usize {
        match self {
            LogStream::Stdout => 0,
            LogStream::Stderr => 1,
        }
    }
}

/// One raw k8s-file record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Timestamp text as written by conmon.
    pub time: String,
    /// Stream.
    pub stream: LogStream,
    /// `F` (true): the line is complete; `P` (false): partial.
    pub full: bool,
    /// Line content without the newline.
    pub text: String,
}

/// One logical log line (partials rejoined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Timestamp text of the first fragment (RFC3339Nano with offset).
    pub time: String,
    /// Timestamp as nanoseconds since the Unix epoch, when parseable.
    pub unix_nanos: Option<i128>,
    /// Stream.
    pub stream: LogStream,
    /// Content without the trailing newline.
    pub text: String,
    /// True when the container exited before the line was completed.
    pub partial: bool,
}

/// Options for reading logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Only the last N entries of what exists when reading starts.
    pub tail: Option<usize>,
    /// Only entries at or after this time (ns since epoch).
    pub since_nanos: Option<i128>,
    /// Only entries before this time (ns since epoch).
    pub until_nanos: Option<i128>,
}

/// Parse one k8s-file line (without its newline).
pub fn parse_log_line(line: &str) -> Option<LogRecord> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let (tag, text) = match rest.split_once(' ') {
        Some((t, x)) => (t, x),
        None => (rest, ""),
    };
    let stream = match stream {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => return None,
    };
    let full = match tag {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    if time.len() < 20 {
        return None;
    }
    Some(LogRecord {
        time: time.to_string(),
        stream,
        full,
        text: text.to_string(),
    })
}

/// Parse an RFC 3339 (nano) timestamp as conmon writes it into k8s-file logs
/// (`2026-11-29T01:22:28.812260819+00:00`; `Z`/`z`, `t` or a space also
/// accepted, fraction digits past nanoseconds ignored) into nanoseconds since
/// the Unix epoch. `None` when the text does not have that shape or names no
/// real date and time.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let small = |r: std::ops::Range<usize>| i8::try_from(num(r)?).ok();
    let year = i16::try_from(num(0..4)?).ok()?;
    let (month, day) = (small(5..7)?, small(8..10)?);
    let (hour, minute, second) = (small(11..13)?, small(14..16)?, small(17..19)?);
    let mut i = 19;
    let mut nanos: i32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        for k in 0..9 {
            let digit = digits.as_bytes().get(k).map_or(0, |c| c - b'0');
            nanos = nanos * 10 + i32::from(digit);
        }
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let civil = jiff::civil::DateTime::new(year, month, day, hour, minute, second, nanos).ok()?;
    let offset = jiff::tz::Offset::from_seconds(i32::try_from(offset_secs).ok()?).ok()?;
    let at = offset.to_timestamp(civil).ok()?;
    Some(at.as_nanosecond())
}

/// Rejoins partial records into entries, per stream.
#[derive(Debug, Default)]
pub struct LogJoiner {
    pending: [Option<(String, String)>; 2],
}

impl LogJoiner {
    /// Feed one record; returns a complete entry when one is finished.
    pub fn push(&mut self, rec: LogRecord) -> Option<LogEntry> {
        let slot = &mut self.pending[rec.stream.index()];
        let (time, mut text) = slot
            .take()
            .unwrap_or_else(|| (rec.time.clone(), String::new()));
        text.push_str(&rec.text);
        if rec.full {
            Some(LogEntry {
                unix_nanos: parse_rfc3339_nanos(&time),
                time,
                stream: rec.stream,
                text,
                partial: false,
            })
        } else {
            *slot = Some((time, text));
            None
        }
    }

    /// Flush unfinished partial lines (at the end of the log).
    pub fn finish(&mut self) -> Vec<LogEntry> {
        let mut out = Vec::new();
        for (i, slot) in self.pending.iter_mut().enumerate() {
            if let Some((time, text)) = slot.take() {
                out.push(LogEntry {
                    unix_nanos: parse_rfc3339_nanos(&time),
                    time,
                    stream: if i == 0 {
                        LogStream::Stdout
                    } else {
                        LogStream::Stderr
                    },
                    text,
                    partial: true,
                });
            }
        }
        out.sort_by_key(|e| e.unix_nanos);
        out
    }
}

fn keep(e: &LogEntry, opts: &LogOptions) -> bool {
    match e.unix_nanos {
        Some(t) => {
            opts.since_nanos.is_none_or(|s| t >= s) && opts.until_nanos.is_none_or(|u| t < u)
        }
        None => true,
    }
}

/// Parse complete k8s-file text into entries (partials rejoined; malformed
/// lines are an error carrying the line number).
pub fn parse_log_text(path: &Path, text: &str, opts: &LogOptions) -> Result<Vec<LogEntry>> {
    let mut j = LogJoiner::default();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec = parse_log_line(line).ok_or_else(|| OciError::BadLogLine {
            path: path.to_path_buf(),
            line_no: n + 1,
            line: line.chars().take(200).collect(),
        })?;
        if let Some(e) = j.push(rec) {
            if keep(&e, opts) {
                out.push(e);
            }
        }
    }
    out.extend(j.finish().into_iter().filter(|e| keep(e, opts)));
    if let Some(n) = opts.tail {
        let skip = out.len().saturating_sub(n);
        out.drain(..skip);
    }
    Ok(out)
}

/// Read a whole k8s-file log. A missing file gives no entries.
pub fn read_log(path: &Path, opts: &LogOptions) -> Result<Vec<LogEntry>> {
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OciError::io("reading log", path, e)),
    };
    parse_log_text(path, &text, opts)
}

/// Format an entry as `podman logs` does (`--timestamps` prefixes the time).
pub fn format_entry(e: &LogEntry, timestamps: bool) -> String {
    if timestamps {
        format!("{} {}", e.time, e.text)
    } else {
        e.text.clone()
    }
}

/// Follow a log: emit the existing entries (honouring `tail`), then new ones
/// as conmon writes them (inotify on the log's directory through the shared
/// watcher), until the container's exit file `<exit_dir>/<id>` appears and the
/// log is drained, or `sink` returns false.
pub fn follow_log(
    path: &Path,
    opts: &LogOptions,
    exit_dir: &Path,
    id: &str,
    mut sink: impl FnMut(LogEntry) -> bool,
) -> Result<()> {
    let log_dir = path.parent().unwrap_or(Path::new("/"));
    let w = crate::watch::watcher()?;
    let _watching = w.acquire(&[log_dir, exit_dir])?;
    let mut file: Option<File> = None;
    let mut ino = 0u64;
    let mut pos = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    let mut joiner = LogJoiner::default();
    let mut first = true;
    let mut line_no = 0usize;
    loop {
        let generation = w.snapshot(&[log_dir, exit_dir])?;
        let exited = exit_dir.join(id).exists();

        // (Re)open on first use, on rotation/truncation (conmon's
        // --log-size-max renames a new file over the log).
        if let Ok(md) = std::fs::metadata(path) {
            if file.is_none() || md.ino() != ino || md.len() < pos {
                match File::open(path) {
                    Ok(f) => {
                        file = Some(f);
                        ino = md.ino();
                        pos = 0;
                        carry.clear();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(OciError::io("opening log", path, e)),
                }
            }
        }
        let mut batch = Vec::new();
        if let Some(f) = file.as_mut() {
            f.seek(SeekFrom::Start(pos))
                .map_err(|e| OciError::io("seeking log", path, e))?;
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .map_err(|e| OciError::io("reading log", path, e))?;
            pos += data.len() as u64;
            carry.extend_from_slice(&data);
            let complete = match carry.iter().rposition(|b| *b == b'\n') {
                Some(i) => carry.drain(..=i).collect::<Vec<u8>>(),
                None => Vec::new(),
            };
            for line in String::from_utf8_lossy(&complete).lines() {
                line_no += 1;
                if line.is_empty() {
                    continue;
                }
                let rec = parse_log_line(line).ok_or_else(|| OciError::BadLogLine {
                    path: path.to_path_buf(),
                    line_no,
                    line: line.chars().take(200).collect(),
                })?;
                if let Some(e) = joiner.push(rec) {
                    if keep(&e, opts) {
                        batch.push(e);
                    }
                }
            }
        }
        if exited {
            batch.extend(joiner.finish().into_iter().filter(|e| keep(e, opts)));
        }
        if first {
            if let Some(n) = opts.tail {
                let skip = batch.len().saturating_sub(n);
                batch.drain(..skip);
            }
            first = false;
        }
        for e in batch {
            if !sink(e) {
                return Ok(());
            }
        }
        if exited {
            return Ok(());
        }
        w.wait_change(generation, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "2026-11-29T01:22:28.812260819+00:00 stdout F out-line-1\n\
2026-11-29T01:22:28.812260819+00:00 stdout P partial-\n\
2026-11-29T01:22:28.812383318+00:00 stderr F err-line-1\n\
2026-11-29T01:22:28.812400000+00:00 stdout P no-\n\
2026-11-29T01:22:28.812500000+00:00 stdout F newline\n\
2026-11-29T01:22:29.000000000+01:00 stdout F \n\
2026-11-29T01:22:30.000000000+00:00 stderr P tail-without-newline\n";

    #[test]
    fn parse_and_join() {
        let es = parse_log_text(Path::new("x"), SAMPLE, &LogOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let texts: Vec<_> = es
            .iter()
            .map(|e| (e.stream, e.text.as_str(), e.partial))
            .collect();
        assert_eq!(
            texts,
            vec![
                (LogStream::Stdout, "out-line-1", false),
                (LogStream::Stderr, "err-line-1", false),
                (LogStream::Stdout, "partial-no-newline", false),
                (LogStream::Stdout, "", false),
                (LogStream::Stderr, "tail-without-newline", true),
            ]
        );
        assert_eq!(es[2].time, "2026-11-29T01:22:28.812260819+00:00");
    }

    #[test]
    fn tail_and_since() {
        let es = parse_log_text(
            Path::new("x"),
            SAMPLE,
            &LogOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(es.len(), 2);
        assert_eq!(es[1].text, "tail-without-newline");
        let since = parse_rfc3339_nanos("2026-11-29T01:22:28.8124Z");
        let es = parse_log_text(
            Path::new("x"),
            SAMPLE,
            &LogOptions {
                since_nanos: since,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // the joined partial starts before `since`; the +01:00 line is earlier in absolute time
        assert_eq!(es.len(), 1, "{es:?}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_nanos("1970-01-01T01:00:01.5+01:00"),
            Some(1_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-03-01T00:00:00.000000001-00:00"),
            Some(951_868_800_000_000_001)
        );
        assert_eq!(parse_rfc3339_nanos("garbage"), None);
    }

    #[test]
    fn malformed() {
        assert!(parse_log_line("nonsense").is_none());
        assert!(parse_log_line("2026-11-29T01:22:28.812260819+00:00 stdin F x").is_none());
        assert!(matches!(
            parse_log_text(Path::new("x"), "bad line here\n", &LogOptions::default()),
            Err(OciError::BadLogLine { line_no: 1, .. })
        ));
        let e = format_entry(
            &parse_log_text(Path::new("x"), SAMPLE, &LogOptions::default())
                .unwrap_or_else(|e| panic!("{e}"))[0],
            true,
        );
        assert_eq!(e, "2026-11-29T01:22:28.812260819+00:00 out-line-1");
    }

    #[test]
    fn follow_until_exit() {
        let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let exits = d.path().join("exits");
        std::fs::create_dir(&exits).unwrap_or_else(|e| panic!("{e}"));
        let log = d.path().join("ctr.log");
        std::fs::write(
            &log,
            "2026-11-29T01:22:28.1Z stdout F one\n2026-11-29T01:22:28.2Z stdout F two\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (log2, exits2) = (log.clone(), exits.clone());
        let t = std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log2)
                .unwrap_or_else(|e| panic!("{e}"));
            let _ = f.write_all(b"2026-11-29T01:22:28.3Z stdout P thr\n2026-11-29T01:22:28.4Z std");
            let _ = f.flush();
            std::thread::sleep(std::time::Duration::from_millis(30));
            let _ = f.write_all(b"out F ee\n");
            std::thread::sleep(std::time::Duration::from_millis(30));
            let _ = std::fs::write(exits2.join("c"), "0");
        });
        let mut got = Vec::new();
        follow_log(
            &log,
            &LogOptions {
                tail: Some(1),
                ..Default::default()
            },
            &exits,
            "c",
            |e| {
                got.push(e.text);
                true
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = t.join();
        assert_eq!(got, vec!["two", "three"]);
    }

    #[test]
    fn timestamp_fractions() {
        let n = parse_rfc3339_nanos;
        assert_eq!(n("1970-01-01T00:00:00.000000001Z"), Some(1));
        assert_eq!(n("1970-01-01T00:00:00.812260819Z"), Some(812_260_819));
        assert_eq!(n("1970-01-01T00:00:00.12Z"), Some(120_000_000));
        // digits past nanoseconds are dropped, not rounded
        assert_eq!(n("1970-01-01T00:00:00.9999999999Z"), Some(999_999_999));
        assert_eq!(n("1970-01-01T00:00:00.Z"), Some(0));
        assert_eq!(n("1969-12-31T23:59:59.5Z"), Some(-500_000_000));
    }

    #[test]
    fn timestamp_calendar_and_offsets() {
        let n = parse_rfc3339_nanos;
        let s = |secs: i128| Some(secs * 1_000_000_000);
        assert_eq!(n("2024-02-29T00:00:00Z"), s(1_709_164_800));
        assert_eq!(n("2000-02-29T23:59:59+00:00"), s(951_868_799));
        // no Feb 29 in common years, centuries included: not a time at all
        assert_eq!(n("2100-02-29T00:00:00Z"), None);
        assert_eq!(n("2026-02-29T00:00:00Z"), None);
        assert_eq!(n("2026-13-01T00:00:00Z"), None);
        // negative and positive offsets, lowercase and space separators
        assert_eq!(n("2026-11-29T01:22:28-05:30"), s(1_795_935_148));
        assert_eq!(n("2026-01-01T00:00:00+14:00"), s(1_767_175_200));
        assert_eq!(n("2026-11-29t06:52:28z"), s(1_795_935_148));
        assert_eq!(n("2026-11-29 06:52:28Z"), s(1_795_935_148));
        assert_eq!(n("2026-11-29T06:52:28"), None);
        assert_eq!(n("2026-11-29T06:52:28+05"), None);
    }
}
