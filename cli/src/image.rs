//! Image commands: pull, images, rmi, tag, untag, image inspect/exists/prune, import, mount,
//! umount, and the pull that `run`/`create` do for a missing image.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use rpod::{ImportOptions, PullEvent, PullPolicy, PullSpec, Runtime, RuntimeError};

use crate::commands::Format;
use crate::ctr::short_id;
use crate::output;

/// Registry options shared by pull, push and run/create.
#[derive(Debug, Clone, Args, Default)]
pub struct RegistryArgs {
    /// Require HTTPS and verify certificates (false: plain HTTP or any certificate).
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Credentials USERNAME[:PASSWORD] for the registry.
    #[arg(long, value_name = "USER[:PASS]")]
    pub creds: Option<String>,
    /// Path of the auth file (default: $REGISTRY_AUTH_FILE, /run/containers/<uid>/auth.json).
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<std::path::PathBuf>,
}

impl RegistryArgs {
    /// The library's view, printing progress unless `quiet`.
    pub fn spec(&self, quiet: bool) -> PullSpec {
        PullSpec {
            tls_verify: self.tls_verify,
            creds: self.creds.clone(),
            authfile: self.authfile.clone(),
            quiet,
        }
    }
}

/// Progress on stderr, as podman prints it.
pub fn progress(quiet: bool) -> impl Fn(PullEvent) + Sync {
    move |e| {
        if quiet {
            return;
        }
        let line = match e {
            PullEvent::Resolved { .. } => None,
            PullEvent::Blob {
                digest, skipped, ..
            } => Some(if skipped {
                format!(
                    "Copying blob {} skipped: already exists",
                    short_digest(&digest)
                )
            } else {
                format!("Copying blob {}", short_digest(&digest))
            }),
            PullEvent::Config { digest } => {
                Some(format!("Copying config {}", short_digest(&digest)))
            }
        };
        if let Some(l) = line {
            let _ = writeln!(std::io::stderr(), "{l}");
        }
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// `rpod image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Show images as a JSON array.
    Inspect {
        /// Image names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Exit 0 when the image exists, 1 when it does not.
    Exists {
        /// Image name or ID.
        name: String,
    },
    /// Remove dangling images (with -a: every image no container uses).
    Prune {
        /// Remove every unused image, not only dangling ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask (rpod never asks; accepted for podman compatibility).
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Remove images.
    Rm(RmiArgs),
    /// Add names to an image.
    Tag(crate::image::TagArgs),
    /// Remove names from an image (all when none given).
    Untag(crate::image::UntagArgs),
    /// Create an image from a root filesystem tarball.
    Import(ImportArgs),
    /// Load images from a docker-archive or oci-archive.
    Load(LoadArgs),
    /// Save images to a docker-archive or oci-archive.
    Save(SaveArgs),
    /// Push an image to a registry.
    Push(PushArgs),
}

/// `rpod tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image.
    pub image: String,
    /// New names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `rpod untag`.
#[derive(Debug, Args)]
pub struct UntagArgs {
    /// The image.
    pub image: String,
    /// Names to remove.
    pub names: Vec<String>,
}

/// `rpod images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (rpod has no intermediate images: same as without).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print IDs only.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Do not truncate IDs.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN, id=PREFIX (repeatable; all must match).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `rpod pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image reference.
    pub name: String,
}

/// `rpod rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove containers using the image too.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove every image.
    #[arg(short = 'a', long, conflicts_with = "names")]
    pub all: bool,
    /// Image names or IDs.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
}

/// `rpod import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Dockerfile-style change: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, STOPSIGNAL
    /// (repeatable).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// History comment.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// The tarball (`-` for stdin).
    pub source: String,
    /// Name of the new image.
    pub reference: Option<String>,
}

/// `rpod load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (default: stdin).
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    /// Print nothing but errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `rpod save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to this file (default: stdout, which must not be a terminal).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// docker-archive (default) or oci-archive.
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    /// Print nothing but errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Images to save.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `rpod push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print nothing but errors.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The image.
    pub image: String,
    /// Where to (default: the image's name).
    pub destination: Option<String>,
}

/// `rpod load`: prints `Loaded image: NAME` per image, as podman.
pub fn load(rt: &Runtime, args: &LoadArgs) -> Result<()> {
    let images = match &args.input {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", p.display()))?;
            rt.load_images(std::io::BufReader::new(f), p)?
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() {
                bail!("no archive given: use -i FILE or pipe one to stdin");
            }
            rt.load_images(std::io::stdin().lock(), std::path::Path::new("<stdin>"))?
        }
    };
    let mut out = String::new();
    for i in images {
        if i.names.is_empty() {
            out.push_str(&format!("Loaded image: {}\n", i.id));
        }
        for n in &i.names {
            out.push_str(&format!("Loaded image: {n}\n"));
        }
    }
    output::raw(&out)
}

/// `rpod save`: written to a temp file beside the output and renamed, so a failed save leaves
/// no partial archive.
pub fn save(rt: &Runtime, args: &SaveArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "docker-archive" => rpod::ArchiveFormat::DockerArchive,
        "oci-archive" => rpod::ArchiveFormat::OciArchive,
        other => bail!("invalid --format {other:?}: use docker-archive or oci-archive"),
    };
    match &args.output {
        Some(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => std::path::PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".rpod-save-")
                .tempfile_in(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create a file in {}: {e}", dir.display()))?;
            let mut w = std::io::BufWriter::new(tmp);
            rt.save_images(&args.names, format, &mut w)?;
            let tmp = w
                .into_inner()
                .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error()))?;
            tmp.as_file()
                .sync_all()
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            tmp.persist(path)
                .map_err(|e| anyhow::anyhow!("writing {}: {}", path.display(), e.error))?;
        }
        None => {
            use std::io::IsTerminal;
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            rt.save_images(&args.names, format, &mut w)?;
            w.flush()?;
        }
    }
    Ok(())
}

/// `rpod push`.
pub fn push(rt: &Runtime, args: &PushArgs) -> Result<()> {
    let digest = rt.push_image(
        &args.image,
        args.destination.as_deref(),
        &args.registry.spec(args.quiet),
    )?;
    if !args.quiet {
        let _ = writeln!(std::io::stderr(), "Writing manifest to image destination");
        let _ = writeln!(std::io::stderr(), "{digest}");
    }
    Ok(())
}

/// `rpod pull`: prints the image ID.
pub fn pull(rt: &Runtime, args: &PullArgs) -> Result<()> {
    let image = rt.pull_image(
        &args.name,
        &args.registry.spec(args.quiet),
        &progress(args.quiet),
    )?;
    if !args.quiet {
        let _ = writeln!(std::io::stderr(), "Writing manifest to image destination");
    }
    output::line(&image.id)
}

/// Runs an `rpod image` subcommand; returns the exit code.
pub fn run(rt: &Runtime, command: &ImageCommand) -> Result<u8> {
    match command {
        ImageCommand::Ls(a) => images(rt, a)?,
        ImageCommand::Pull(a) => pull(rt, a)?,
        ImageCommand::Inspect { names } => inspect(rt, names)?,
        ImageCommand::Exists { name } => {
            return match rt.lookup_image(name) {
                Ok(_) => Ok(0),
                Err(RuntimeError::Image(e)) if matches!(*e, rpod::ImageError::NotFound { .. }) => {
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
        ImageCommand::Prune { all, .. } => {
            let mut out = String::new();
            for id in rt.prune_images(*all)? {
                out.push_str(&id);
                out.push('\n');
            }
            output::raw(&out)?;
        }
        ImageCommand::Rm(a) => return rmi(rt, a),
        ImageCommand::Tag(a) => {
            rt.tag_image(&a.image, &a.names)?;
        }
        ImageCommand::Untag(a) => {
            rt.untag_image(&a.image, &a.names)?;
        }
        ImageCommand::Import(a) => import(rt, a)?,
        ImageCommand::Load(a) => load(rt, a)?,
        ImageCommand::Save(a) => save(rt, a)?,
        ImageCommand::Push(a) => push(rt, a)?,
    }
    Ok(0)
}

/// `rpod images`.
pub fn images(rt: &Runtime, args: &ImagesArgs) -> Result<()> {
    let mut list = rt.list_images()?;
    for f in &args.filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid filter {f:?}: use KEY=VALUE"))?;
        match k {
            "dangling" => {
                let want: bool = v.parse().map_err(|_| {
                    anyhow::anyhow!("invalid filter {f:?}: dangling takes true or false")
                })?;
                list.retain(|i| i.dangling == want);
            }
            "reference" => list.retain(|i| i.names.iter().any(|n| reference_matches(n, v))),
            "id" => list.retain(|i| i.id.starts_with(v)),
            other => bail!("invalid filter {other:?}: use dangling, reference or id"),
        }
    }
    // Newest first, as podman.
    list.sort_by_key(|i| std::cmp::Reverse(i.created));
    if args.quiet {
        let mut out = String::new();
        for i in &list {
            out.push_str(&short_id(&i.id, args.no_trunc));
            out.push('\n');
        }
        return output::raw(&out);
    }
    if args.format == Format::Json {
        return output::print_value(&serde_json::to_value(&list)?, true);
    }
    let mut table = output::Table::new(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    for (n, i) in list.iter().enumerate() {
        let created = UNIX_EPOCH + Duration::from_secs(u64::try_from(i.created).unwrap_or(0));
        let names: Vec<(String, String)> = if i.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.names
                .iter()
                .map(|n| match n.rsplit_once(':') {
                    Some((r, t)) if !t.contains('/') => (r.to_owned(), t.to_owned()),
                    _ => (n.clone(), "<none>".into()),
                })
                .collect()
        };
        for (k, (repo, tag)) in names.into_iter().enumerate() {
            table.push(
                (usize::MAX - n, usize::MAX - k),
                [
                    repo,
                    tag,
                    short_id(&i.id, args.no_trunc),
                    rpod::timefmt::ago(created),
                    human_size(i.size),
                ],
            );
        }
    }
    table.print(true)
}

/// podman's `reference=` filter: the name, or its repository, matches (a trailing `*` is a
/// prefix match); a pattern without a registry matches the end of the repository.
fn reference_matches(name: &str, pattern: &str) -> bool {
    let repo = name
        .rsplit_once(':')
        .map_or(name, |(r, t)| if t.contains('/') { name } else { r });
    let candidates = [name, repo];
    candidates.iter().any(|c| {
        if let Some(prefix) = pattern.strip_suffix('*') {
            c.starts_with(prefix)
                || c.split('/')
                    .next_back()
                    .is_some_and(|l| l.starts_with(prefix))
        } else {
            *c == pattern || c.ends_with(&format!("/{pattern}"))
        }
    })
}

/// Sizes as podman prints them (decimal units, 3 significant digits: `1.5 MB`, `999 B`).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{v:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text} {}", units[u])
}

/// `rpod image inspect`.
pub fn inspect(rt: &Runtime, names: &[String]) -> Result<()> {
    let mut docs = Vec::new();
    for n in names {
        docs.push(serde_json::to_value(rt.inspect_image(n)?)?);
    }
    output::print_value(&serde_json::Value::Array(docs), true)
}

/// `rpod rmi`: every name is tried; the exit code is 1 if one was unknown, 2 if one was in use,
/// else 125 on another error (podman's).
pub fn rmi(rt: &Runtime, args: &RmiArgs) -> Result<u8> {
    let names: Vec<String> = if args.all {
        rt.list_images()?.into_iter().map(|i| i.id).collect()
    } else {
        args.names.clone()
    };
    let mut code = 0u8;
    let mut out = String::new();
    for n in &names {
        match rt.remove_image(n, args.force) {
            Ok(lines) => {
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
            Err(e) => {
                let c = match &e {
                    RuntimeError::Image(i) if matches!(**i, rpod::ImageError::NotFound { .. }) => 1,
                    RuntimeError::ImageInUse { .. } => 2,
                    _ => 125,
                };
                let _ = writeln!(std::io::stderr(), "Error: {e}");
                code = code.max(c);
            }
        }
    }
    output::raw(&out)?;
    Ok(code)
}

/// `rpod import`.
pub fn import(rt: &Runtime, args: &ImportArgs) -> Result<()> {
    let mut options = ImportOptions {
        name: args.reference.clone(),
        message: args.message.clone(),
        ..ImportOptions::default()
    };
    for c in &args.changes {
        apply_change(&mut options.config, c)?;
    }
    let image = if args.source == "-" {
        rt.import_image(std::io::stdin().lock(), &options)?
    } else {
        let f = std::fs::File::open(&args.source)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", args.source))?;
        rt.import_image(std::io::BufReader::new(f), &options)?
    };
    if !args.quiet {
        let _ = writeln!(std::io::stderr(), "Writing manifest to image destination");
    }
    output::line(&image.id)
}

/// One `--change` instruction into the image's runtime config.
fn apply_change(cfg: &mut rpod::ImageRuntimeConfig, change: &str) -> Result<()> {
    let (op, arg) = change.trim().split_once([' ', '=']).unwrap_or((change, ""));
    let arg = arg.trim();
    // JSON form (`["a","b"]`) or the shell form (`sh -c ARG`).
    let list = |arg: &str| -> Result<Vec<String>> {
        if arg.starts_with('[') {
            Ok(serde_json::from_str(arg)
                .map_err(|e| anyhow::anyhow!("invalid change {change:?}: {e}"))?)
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), arg.into()])
        }
    };
    match op.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(list(arg)?),
        "ENTRYPOINT" => cfg.entrypoint = Some(list(arg)?),
        "ENV" => {
            let kv = match arg.split_once([' ', '=']) {
                Some((k, v)) => format!("{k}={}", v.trim()),
                None => bail!("invalid change {change:?}: ENV needs KEY=VALUE"),
            };
            cfg.env.get_or_insert_with(Vec::new).push(kv);
        }
        "WORKDIR" => cfg.working_dir = Some(arg.to_owned()),
        "USER" => cfg.user = Some(arg.to_owned()),
        "STOPSIGNAL" => cfg.stop_signal = Some(arg.to_owned()),
        "LABEL" => {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("invalid change {change:?}: LABEL needs KEY=VALUE"))?;
            cfg.labels
                .get_or_insert_with(Default::default)
                .insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
        }
        other => bail!(
            "invalid change {change:?}: {other} is not one of CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, STOPSIGNAL"
        ),
    }
    Ok(())
}

/// For `run`/`create IMAGE`: makes sure the image is in the store, as `--pull` says.
pub fn ensure(rt: &Runtime, name: &str, policy: &str, registry: &RegistryArgs) -> Result<()> {
    let policy: PullPolicy = policy.parse()?;
    rt.ensure_image(name, policy, &registry.spec(false), &progress(false))?;
    Ok(())
}

/// `rpod mount [CTR…]`: prints the mount point.
pub fn mount(rt: &Runtime, names: &[String]) -> Result<()> {
    let mut out = String::new();
    for n in names {
        out.push_str(&rt.mount_container(n)?.display().to_string());
        out.push('\n');
    }
    output::raw(&out)
}

/// `rpod umount CTR…`.
pub fn umount(rt: &Runtime, names: &[String]) -> Result<()> {
    let mut out = String::new();
    for n in names {
        out.push_str(&rt.unmount_container(n)?);
        out.push('\n');
    }
    output::raw(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_podman() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(human_size(123_456_789), "123 MB");
    }

    #[test]
    fn reference_filter() {
        assert!(reference_matches("localhost/foo:latest", "foo"));
        assert!(reference_matches(
            "localhost/foo:latest",
            "localhost/foo:latest"
        ));
        assert!(reference_matches("localhost/foo:latest", "fo*"));
        assert!(!reference_matches("localhost/foo:latest", "bar"));
    }

    #[test]
    fn changes_apply() {
        let mut c = rpod::ImageRuntimeConfig::default();
        assert!(apply_change(&mut c, r#"CMD ["/bin/sh","-c","echo"]"#).is_ok());
        assert!(apply_change(&mut c, "ENV A=1").is_ok());
        assert!(apply_change(&mut c, "WORKDIR /tmp").is_ok());
        assert!(apply_change(&mut c, "BOGUS x").is_err());
        assert_eq!(c.cmd.as_deref().map(<[String]>::len), Some(3));
        assert_eq!(c.env, Some(vec!["A=1".to_owned()]));
    }
}
