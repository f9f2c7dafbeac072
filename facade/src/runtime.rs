//! The [`Runtime`]: configuration, binaries, directories, locks and state, composed
//! (reference §5.1).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rpod_config::{Config, ConfigEnv, Registries, RuntimeOptions, StateBackend};
use rpod_lock::LockManager;
use rpod_oci::{find_binary, Binary};
use rpod_state::State;

use crate::convert;
use crate::error::RuntimeError;
use crate::info::{self, Info, RegistriesInfo};
use crate::locks::{self, AliveLock, LockReport};
use crate::network::{CniNetwork, NetworkBackend};
use crate::oci::OciDriver;
use crate::rootfs::{DefaultRootfs, DirectoryRootfs, InfraRootfs, RootfsProvider};

/// File name of the LMDB state database in the static dir.
pub const STATE_FILE: &str = rpod_state::DB_FILE_NAME;

/// Assembles the configuration for `env` and `options` without touching anything else
/// (no directories, binaries, locks or state): what `rpod config show` needs.
pub fn load_config(env: &ConfigEnv, options: &RuntimeOptions) -> Result<Config, RuntimeError> {
    Ok(Config::load(env, options)?)
}

/// rpod's runtime: the entry point for everything it does with containers and pods.
///
/// Create one with [`Runtime::new`] (or [`Runtime::builder`] to choose the environment, the
/// network backend or the root filesystem provider); each process that works on a given root
/// makes its own (there is no daemon). Other processes may change the same state concurrently;
/// every operation on an object takes the object's lock and re-reads it.
///
/// A container's life, as `rpod run` lives it (root is needed to run containers):
///
/// ```no_run
/// use rpod::{ContainerSpec, Runtime, RuntimeOptions};
///
/// let rt = Runtime::new(RuntimeOptions::new().tmp_dir("/run/myapp/rpod"))?;
/// let ctr = rt.new_container(ContainerSpec {
///     rootfs: "/srv/rootfs".into(),
///     command: vec!["echo".into(), "hello".into()],
///     ..Default::default()
/// })?;
/// rt.start_container(&ctr.config.id)?;
/// let code = rt.wait_container(&ctr.config.id, None)?;
/// rt.remove_container(&ctr.config.id, true)?;
/// assert_eq!(code, Some(0));
/// # Ok::<(), rpod::RuntimeError>(())
/// ```
///
/// A pod: members share the infra container's network, IPC and UTS namespaces; removing the
/// pod stops and removes them all.
///
/// ```no_run
/// use rpod::{ContainerSpec, PodSpec, Runtime, RuntimeOptions};
///
/// let rt = Runtime::new(RuntimeOptions::new())?;
/// let pod = rt.new_pod(PodSpec { name: Some("web".into()), ..Default::default() })?;
/// for cmd in [["httpd", "-f"], ["sleep", "1000"]] {
///     rt.new_container(ContainerSpec {
///         pod: Some("web".into()),
///         rootfs: "/srv/rootfs".into(),
///         command: cmd.iter().map(|s| s.to_string()).collect(),
///         ..Default::default()
///     })?;
/// }
/// rt.start_pod("web")?;
/// rt.remove_pod(&pod.config.id, true)?;
/// # Ok::<(), rpod::RuntimeError>(())
/// ```
pub struct Runtime {
    pub(crate) config: Config,
    oci_runtime: Binary,
    conmon: Binary,
    pub(crate) locks: Arc<dyn LockManager>,
    pub(crate) state: Box<dyn State>,
    pub(crate) oci: OnceLock<Arc<dyn OciDriver>>,
    pub(crate) network: Arc<dyn NetworkBackend>,
    pub(crate) rootfs: Arc<dyn RootfsProvider>,
    /// The image store, opened on first use.
    pub(crate) images: Arc<crate::image::StoreHandle>,
    cleanup_bin: Option<PathBuf>,
    pub(crate) valid: AtomicBool,
}

/// Builds a [`Runtime`] with a chosen environment and seams (see [`Runtime::builder`]).
#[derive(Debug)]
pub struct RuntimeBuilder {
    env: Option<ConfigEnv>,
    options: RuntimeOptions,
    network: Option<Arc<dyn NetworkBackend>>,
    rootfs: Option<Arc<dyn RootfsProvider>>,
    oci: Option<Arc<dyn OciDriver>>,
    renumber: bool,
    existing_only: bool,
}

impl RuntimeBuilder {
    /// Discover the configuration in `env` instead of the real environment (tests, sandboxes).
    #[must_use]
    pub fn env(mut self, env: ConfigEnv) -> Self {
        self.env = Some(env);
        self
    }

    /// The network backend containers get their network namespace from (default:
    /// [`CniNetwork`] for this configuration; [`NullNetwork`](crate::NullNetwork) has no CNI).
    #[must_use]
    pub fn network_backend(mut self, backend: Arc<dyn NetworkBackend>) -> Self {
        self.network = Some(backend);
        self
    }

    /// The provider of containers' root filesystems (default: [`DefaultRootfs`]: `--rootfs`
    /// directories as they are, and the infra root built from `init_path`).
    #[must_use]
    pub fn rootfs_provider(mut self, provider: Arc<dyn RootfsProvider>) -> Self {
        self.rootfs = Some(provider);
        self
    }

    /// Fail with [`RuntimeError::NoState`] instead of creating a new root when the state database
    /// does not exist (before any directory, file or lock segment is made). For commands that only
    /// make sense on existing objects and may run after the root was removed, such as the cleanup
    /// command conmon runs when a container exits: after `system reset`, it would otherwise
    /// recreate the root, its database and its lock segment. The in-memory backend is unaffected.
    #[must_use]
    pub fn existing_state_only(mut self) -> Self {
        self.existing_only = true;
        self
    }

    /// The OCI driver to use instead of conmon + runc (unit tests).
    #[cfg(test)]
    pub(crate) fn oci_driver(mut self, driver: Arc<dyn OciDriver>) -> Self {
        self.oci = Some(driver);
        self
    }

    /// Assembles the configuration, finds the OCI runtime and conmon, creates the static dir
    /// (0700), opens the state and applies the paths stored in it, creates the tmp dir (0751)
    /// and opens the lock table; after a reboot, refreshes the state.
    pub fn build(mut self) -> Result<Runtime, RuntimeError> {
        let env = self.env.take().unwrap_or_else(ConfigEnv::detect);
        Runtime::build(&env, self)
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("static_dir", &self.config.values.static_dir)
            .field("tmp_dir", &self.config.values.tmp_dir)
            .field("oci_runtime", &self.oci_runtime)
            .field("conmon", &self.conmon)
            .field("locks", &self.locks)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds a runtime from the real environment and `options`: assembles the configuration,
    /// finds the OCI runtime and conmon, creates the static dir (0700), opens the state and applies
    /// the paths stored in it, creates the tmp dir (0751) and opens the lock table.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        Self::builder(options).build()
    }

    /// A builder for a runtime with `options`, to choose the environment, the network backend
    /// or the root filesystem provider before it is built.
    pub fn builder(options: RuntimeOptions) -> RuntimeBuilder {
        RuntimeBuilder {
            env: None,
            options,
            network: None,
            rootfs: None,
            oci: None,
            renumber: false,
            existing_only: false,
        }
    }

    /// Like [`Runtime::new`], reading only the configuration file at `path` (`--config`).
    pub fn from_config(
        path: impl AsRef<Path>,
        options: RuntimeOptions,
    ) -> Result<Runtime, RuntimeError> {
        Self::new(options.config_path(path.as_ref()))
    }

    /// Like [`Runtime::new`] in an explicit environment (tests, sandboxes).
    pub fn with_env(env: &ConfigEnv, options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        Self::builder(options).env(env.clone()).build()
    }

    /// `rpod system renumber`: recreates the lock table with the configured `num_locks` and gives
    /// every container and pod a fresh lock (required after changing `num_locks`).
    ///
    /// Like libpod, nothing stops other rpod processes that still use the old table while this
    /// runs: renumber when nothing else is running.
    pub fn renumber(env: &ConfigEnv, options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let mut builder = Self::builder(options).env(env.clone());
        builder.renumber = true;
        builder.build()
    }

    fn build(env: &ConfigEnv, builder: RuntimeBuilder) -> Result<Runtime, RuntimeError> {
        let renumber = builder.renumber;
        let mut config = Config::load(env, &builder.options)?;
        if let Some(path) = config.write_rootless_default()? {
            tracing::info!(path = %path.display(), "wrote the effective configuration for this user");
        }
        let v = &config.values;
        let (name, candidates) =
            v.runtime_candidates()
                .ok_or_else(|| RuntimeError::BinaryNotFound {
                    what: format!("OCI runtime {:?}", v.runtime),
                    candidates: Vec::new(),
                })?;
        let oci_runtime = find_binary(&format!("OCI runtime {name:?}"), &name, &candidates)?;
        let conmon = find_binary("conmon", "conmon", &v.conmon_path)?;
        if builder.existing_only && v.state_backend == StateBackend::Lmdb {
            let db = v.static_dir.join(STATE_FILE);
            if !db.exists() {
                return Err(RuntimeError::NoState { path: db });
            }
        }
        let state = open_state(&config)?;
        // Paths stored in the database win over defaults; explicit values must match them.
        config.apply_db_config(&convert::db_from_state(&state.get_db_config()?))?;
        state.validate_db_config(&convert::db_to_state(&config.db_config()))?;
        create_dir(&config.values.tmp_dir, 0o751)?;
        // Processes sharing a tmp dir create the lock table one at a time; processes with
        // different tmp dirs racing on one segment name are handled by the lock manager.
        let alive = AliveLock::acquire(&config.values.tmp_dir)?;
        let (rt_locks, segment_created) = if renumber {
            (locks::recreate(&config)?, true)
        } else {
            locks::open(&config)?
        };
        let images = Arc::new(crate::image::StoreHandle::new(store_options(&config)?));
        let rootfs = builder.rootfs.unwrap_or_else(|| {
            Arc::new(DefaultRootfs {
                directory: DirectoryRootfs,
                infra: InfraRootfs {
                    dest: config.values.static_dir.join("infra-rootfs"),
                    init_path: PathBuf::from(&config.values.init_path),
                },
                image: crate::image::ImageRootfs {
                    store: Arc::clone(&images),
                },
            })
        });
        let network: Arc<dyn NetworkBackend> = match builder.network {
            Some(n) => n,
            None => Arc::new(CniNetwork::from_config(&config)?),
        };
        let oci = OnceLock::new();
        if let Some(driver) = builder.oci {
            let _ = oci.set(driver);
        }
        let rt = Runtime {
            config,
            oci_runtime,
            conmon,
            locks: rt_locks,
            state,
            oci,
            network,
            rootfs,
            images,
            cleanup_bin: default_cleanup_binary(),
            valid: AtomicBool::new(true),
        };
        let alive_file = rt.config.values.tmp_dir.join(crate::refresh::ALIVE_FILE);
        let needs_refresh = !alive_file.exists();
        if needs_refresh {
            rt.refresh(!renumber)?;
        } else if segment_created && !renumber {
            rt.reserve_after_segment_loss()?;
        }
        if renumber {
            rt.renumber_objects()?;
        }
        let sole_owner = rt.locks.bind_owner(&locks::owner_id(&rt.config))?;
        if !renumber {
            // After a refresh or a renumber, the table holds exactly the recorded IDs.
            if let Err(e) = rt.sweep_leaked_locks(sole_owner) {
                tracing::warn!(error = %e, "reclaiming leaked locks: {e}");
            }
        }
        if needs_refresh {
            rpod_config::write_file_atomic(&alive_file, b"", 0o644, false).map_err(|source| {
                RuntimeError::Write {
                    path: alive_file.clone(),
                    source,
                }
            })?;
        }
        drop(alive);
        Ok(rt)
    }

    /// Gives every container, then every pod, a freshly allocated lock (libpod's
    /// `renumberLocks`), in every namespace.
    fn renumber_objects(&self) -> Result<(), RuntimeError> {
        let all = self.state.view("")?;
        self.locks.free_all()?;
        for c in all.all_containers()? {
            let lock = self.locks.allocate()?;
            let mut cfg = c.config;
            cfg.lock_id = lock.id();
            all.rewrite_container_config(&cfg.id, &cfg)?;
        }
        for p in all.all_pods()? {
            let lock = self.locks.allocate()?;
            let mut cfg = p.config;
            cfg.lock_id = lock.id();
            all.rewrite_pod_config(&cfg.id, &cfg)?;
        }
        Ok(())
    }

    /// This runtime working on a view of its state that sees every namespace (the same
    /// configuration, binaries and locks), for operations over all of them.
    pub(crate) fn all_namespaces(&self) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            config: self.config.clone(),
            oci_runtime: self.oci_runtime.clone(),
            conmon: self.conmon.clone(),
            locks: Arc::clone(&self.locks),
            state: self.state.view("")?,
            oci: self.oci.clone(),
            network: Arc::clone(&self.network),
            rootfs: Arc::clone(&self.rootfs),
            images: Arc::clone(&self.images),
            cleanup_bin: self.cleanup_bin.clone(),
            valid: AtomicBool::new(self.valid.load(Ordering::Acquire)),
        })
    }

    /// Uses `bin` (an `rpod` executable) as the cleanup command conmon runs when a container
    /// exits; `None` disables it (the embedder then calls [`Runtime::cleanup_container`]).
    /// The default is this executable if it is called `rpod`, else `rpod` on `$PATH`.
    #[must_use]
    pub fn with_cleanup_binary(mut self, bin: Option<PathBuf>) -> Self {
        self.cleanup_bin = bin;
        self
    }

    /// The `rpod` executable conmon runs as cleanup command, if any. The in-memory state
    /// cannot be seen by another process, so it has none.
    pub fn cleanup_binary(&self) -> Option<&Path> {
        if self.config.values.state_backend == StateBackend::Memory {
            return None;
        }
        self.cleanup_bin.as_deref()
    }

    /// A read of the state, once the runtime is known to be usable.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&dyn State) -> Result<T, rpod_state::StateError>,
    ) -> Result<T, RuntimeError> {
        self.check_valid()?;
        Ok(f(self.state.as_ref())?)
    }

    /// Fails once the runtime has been shut down.
    pub(crate) fn check_valid(&self) -> Result<(), RuntimeError> {
        if self.valid.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(RuntimeError::Stopped)
        }
    }

    /// A copy of the effective configuration.
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// The OCI runtime found.
    pub fn oci_runtime(&self) -> &Binary {
        &self.oci_runtime
    }

    /// The conmon binary found.
    pub fn conmon(&self) -> &Binary {
        &self.conmon
    }

    /// The name of the network backend containers get their namespaces from.
    pub fn network_backend_name(&self) -> &str {
        self.network.name()
    }

    /// Lock table usage: total, free and held counts and the current holders.
    pub fn lock_report(&self) -> Result<LockReport, RuntimeError> {
        locks::report(&self.config, self.locks.as_ref())
    }

    /// Host, store and registry information.
    pub fn info(&self) -> Result<Info, RuntimeError> {
        let file = self.config.env.registries_conf();
        let registries = Registries::load(&file)?;
        let mut store = info::store_info(&self.config);
        match self.image_store().and_then(|s| {
            Ok((
                s.driver(),
                s.images().map_err(crate::image::image_err)?.len(),
            ))
        }) {
            Ok((driver, images)) => {
                store.graph_driver_name = driver.name().to_owned();
                store.image_count = images;
            }
            Err(e) => store.graph_driver_name = format!("unavailable: {e}"),
        }
        store.container_count = self.state.view("")?.all_containers()?.len();
        Ok(Info {
            host: info::host_info(self),
            store,
            registries: RegistriesInfo {
                search: registries.search,
                insecure: registries.insecure,
                file,
            },
            network: info::network_info(&self.config, self.network.name()),
        })
    }
}

/// Opens the configured state backend (creating the static dir for LMDB).
fn open_state(config: &Config) -> Result<Box<dyn State>, RuntimeError> {
    Ok(match config.values.state_backend {
        StateBackend::Memory => {
            Box::new(rpod_state::InMemoryState::new().with_namespace(&config.values.namespace))
        }
        StateBackend::Lmdb => {
            create_dir(&config.values.static_dir, 0o700)?;
            Box::new(
                rpod_state::LmdbState::open(&config.values.static_dir)?
                    .with_namespace(&config.values.namespace),
            )
        }
    })
}

/// This executable if it is `rpod`, else `rpod` found on `$PATH`.
fn default_cleanup_binary() -> Option<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "rpod") {
            return Some(exe);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("rpod"))
        .find(|p| p.is_file())
}

/// Creates `path` (and missing parents) with `mode`; an existing directory keeps its mode.
pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), RuntimeError> {
    let err = |source| RuntimeError::CreateDir {
        path: path.to_owned(),
        source,
    };
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(err)?;
    // The umask may have narrowed the mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Where the image store lives and which driver it uses (`storage_driver`: `overlay`, `vfs`, or
/// empty for overlay where the kernel has it).
pub(crate) fn store_options(config: &Config) -> Result<rpod_storage::StoreOptions, RuntimeError> {
    let v = &config.values;
    let driver = match v.storage_driver.as_str() {
        "" => None,
        "overlay" | "overlay2" => Some(rpod_storage::Driver::Overlay),
        "vfs" => Some(rpod_storage::Driver::Vfs),
        other => {
            return Err(RuntimeError::InvalidSpec(format!(
                "unknown storage driver {other:?} (storage_driver): use overlay or vfs"
            )))
        }
    };
    Ok(rpod_storage::StoreOptions {
        graph_root: v.graph_root.clone(),
        run_root: v.run_root.clone(),
        driver,
    })
}
