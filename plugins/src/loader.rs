//! Loading plugins at start: dlopen, find `flock_plugin_v1`, check the table, run `init`.
//! Libraries are never unloaded (their code may still be running on a pool thread, and a
//! plugin's statics may hold threads or handles), so the handle is leaked on purpose. A reload
//! ([`Plugins::reinit`]) runs `init` again on the loaded libraries and builds a new chain.

use crate::abi::{self, FlockPluginV1, FlockStr, PluginEntry};
use serde::Deserialize;
use std::ffi::{c_void, CStr};
use std::fmt;
use std::mem::{size_of, MaybeUninit};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// One `[[plugins.load]]` entry of flockd's config.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The shared library (`.so`).
    pub path: PathBuf,
    /// Plugin-specific settings, handed to the plugin's `init` as is.
    #[serde(default)]
    pub config: String,
}

/// A loaded plugin: its table (copied, so a short table reads as NULL hooks) and its state.
pub(crate) struct Plugin {
    pub(crate) name: String,
    /// The library, canonicalized (to check that a reload names the same chain).
    pub(crate) path: PathBuf,
    pub(crate) table: FlockPluginV1,
    pub(crate) state: *mut c_void,
}

// The ABI requires every hook to be thread-safe, state included.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

/// The loaded plugins, in configuration order. Shared (`Arc`) by whoever runs hooks.
pub struct Plugins {
    pub(crate) list: Vec<Plugin>,
    /// Hook errors and panics seen (each one denied).
    pub(crate) errors: AtomicU64,
}

/// Why a plugin refused to load: the file and the reason, for a start-up error message.
#[derive(Debug)]
pub struct LoadError {
    pub path: PathBuf,
    pub reason: LoadErrorKind,
}

#[derive(Debug)]
pub enum LoadErrorKind {
    MissingFile(std::io::Error),
    NotALibrary(String),
    MissingSymbol,
    NullTable,
    AbiMismatch {
        found: u32,
        expected: u32,
    },
    StructTooSmall {
        found: u32,
        needed: u32,
    },
    Init {
        plugin: String,
        code: i32,
        message: String,
    },
    /// [`Plugins::reinit`]: the configured chain is not the loaded one (a restart is needed).
    ChainChanged(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: ", self.path.display())?;
        match &self.reason {
            LoadErrorKind::MissingFile(e) => write!(f, "cannot open the file: {e}"),
            LoadErrorKind::NotALibrary(e) => write!(f, "not a loadable shared library: {e}"),
            LoadErrorKind::MissingSymbol => write!(
                f,
                "missing symbol `{}`: not a Flock plugin (Rust: flock_plugin! macro; C: FLOCK_PLUGIN_EXPORT)",
                abi::SYMBOL
            ),
            LoadErrorKind::NullTable => write!(f, "`{}` returned NULL", abi::SYMBOL),
            LoadErrorKind::AbiMismatch { found, expected } => write!(
                f,
                "ABI version mismatch: the plugin has version {found}, this flockd expects {expected}; rebuild it against this flockd's flock_plugin.h or flock-plugins"
            ),
            LoadErrorKind::StructTooSmall { found, needed } => write!(
                f,
                "plugin table too small: struct_size {found}, at least {needed} bytes expected (set struct_size = sizeof the table)"
            ),
            LoadErrorKind::Init { plugin, code, message } => {
                write!(f, "init of `{plugin}` failed (code {code}): {message}")
            }
            LoadErrorKind::ChainChanged(why) => write!(f, "the plugin list changed ({why}); restart flockd to load it"),
        }
    }
}

impl std::error::Error for LoadError {}

impl Plugins {
    /// No plugins: every hook allows, every persona is shown.
    pub fn none() -> Plugins {
        Plugins {
            list: Vec::new(),
            errors: AtomicU64::new(0),
        }
    }

    /// Loads and initializes every plugin in order; the first failure stops the start.
    pub fn load(specs: &[PluginSpec]) -> Result<Plugins, LoadError> {
        let mut plugins = Plugins::none();
        for spec in specs {
            let err = |reason| LoadError {
                path: spec.path.clone(),
                reason,
            };
            let plugin = load_one(&spec.path, &spec.config).map_err(err)?;
            tracing::info!(plugin = %plugin.name, path = %spec.path.display(), "plugin loaded");
            plugins.list.push(plugin);
        }
        Ok(plugins)
    }

    /// A new chain of the same libraries, each `init` run again with its new `config` (for a
    /// reload: libraries stay loaded, see the module docs). `specs` must name the loaded
    /// libraries, in the same order. The old chain is untouched and its states are never
    /// freed (the ABI has no destroy hook; a late call may still be using them). On the first
    /// failing `init` the error is returned; states already made by this call are leaked too.
    /// The new chain's error count starts at the old one's, so the figure stays cumulative.
    pub fn reinit(&self, specs: &[PluginSpec]) -> Result<Plugins, LoadError> {
        if specs.len() != self.list.len() {
            let path = specs
                .get(self.list.len())
                .or(specs.last())
                .map(|s| s.path.clone())
                .unwrap_or_default();
            let why = format!(
                "{} plugins configured, {} loaded",
                specs.len(),
                self.list.len()
            );
            return Err(LoadError {
                path,
                reason: LoadErrorKind::ChainChanged(why),
            });
        }
        let mut fresh = Plugins {
            list: Vec::with_capacity(specs.len()),
            errors: AtomicU64::new(self.errors()),
        };
        for (old, spec) in self.list.iter().zip(specs) {
            let err = |reason| LoadError {
                path: spec.path.clone(),
                reason,
            };
            let path = std::fs::canonicalize(&spec.path)
                .map_err(|e| err(LoadErrorKind::MissingFile(e)))?;
            if path != old.path {
                let why = format!(
                    "{} is loaded at this place of the chain",
                    old.path.display()
                );
                return Err(err(LoadErrorKind::ChainChanged(why)));
            }
            let state = match old.table.init {
                None => std::ptr::null_mut(),
                Some(init) => run_init(init, &old.name, &spec.config).map_err(err)?,
            };
            tracing::info!(plugin = %old.name, path = %spec.path.display(), "plugin re-initialized");
            fresh.list.push(Plugin {
                name: old.name.clone(),
                path,
                table: old.table,
                state,
            });
        }
        Ok(fresh)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The plugins' own names, in chain order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name.as_str()).collect()
    }
}

fn load_one(path: &Path, config: &str) -> Result<Plugin, LoadErrorKind> {
    // Absolute, so dlopen never searches LD_LIBRARY_PATH for a bare file name.
    let path = std::fs::canonicalize(path).map_err(LoadErrorKind::MissingFile)?;
    // SAFETY: running a library's initializers is what loading a plugin means; the operator
    // chose the file.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| LoadErrorKind::NotALibrary(e.to_string()))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry = unsafe { lib.get::<PluginEntry>(abi::SYMBOL.as_bytes()) }
        .map_err(|_| LoadErrorKind::MissingSymbol)?;
    // SAFETY: per the ABI, it returns NULL or a pointer to a static table.
    let ptr = unsafe { entry() };
    if ptr.is_null() {
        return Err(LoadErrorKind::NullTable);
    }
    // SAFETY: a table is at least as long as its own struct_size (the ABI).
    let table = unsafe { read_table(ptr)? };
    let name = if table.name.is_null() {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        // SAFETY: static NUL-terminated string per the ABI.
        unsafe { CStr::from_ptr(table.name) }
            .to_string_lossy()
            .into_owned()
    };
    let state = match table.init {
        None => std::ptr::null_mut(),
        Some(init) => run_init(init, &name, config)?,
    };
    Ok(Plugin {
        name,
        path,
        table,
        state,
    })
}

/// Checks the header, then copies the fields both sides know; later fields stay zero (NULL).
///
/// # Safety
/// `ptr` points at a table at least as long as its own `struct_size` says.
unsafe fn read_table(ptr: *const FlockPluginV1) -> Result<FlockPluginV1, LoadErrorKind> {
    // Every version starts with these two u32s.
    let [version, size] = std::ptr::read(ptr.cast::<[u32; 2]>());
    if version != abi::ABI_VERSION {
        return Err(LoadErrorKind::AbiMismatch {
            found: version,
            expected: abi::ABI_VERSION,
        });
    }
    if size < abi::MIN_STRUCT_SIZE {
        return Err(LoadErrorKind::StructTooSmall {
            found: size,
            needed: abi::MIN_STRUCT_SIZE,
        });
    }
    let mut table = MaybeUninit::<FlockPluginV1>::zeroed();
    let n = (size as usize).min(size_of::<FlockPluginV1>());
    std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), table.as_mut_ptr().cast::<u8>(), n);
    // SAFETY: all-zero is valid for every field (NULL pointers, `None` hooks).
    Ok(table.assume_init())
}

fn run_init(init: abi::InitFn, name: &str, config: &str) -> Result<*mut c_void, LoadErrorKind> {
    // A NUL after the bytes, so C plugins may treat the config as a C string.
    let mut bytes = Vec::with_capacity(config.len() + 1);
    bytes.extend_from_slice(config.as_bytes());
    bytes.push(0);
    let config = FlockStr {
        ptr: bytes.as_ptr(),
        len: config.len(),
    };
    let mut state = std::ptr::null_mut();
    let mut message = String::new();
    // SAFETY: the arguments are valid for the call; `record_error` expects `&mut String`.
    let code = unsafe { init(config, &mut state, record_error, (&raw mut message).cast()) };
    if code != 0 {
        if message.is_empty() {
            message = "(no message)".into();
        }
        return Err(LoadErrorKind::Init {
            plugin: name.into(),
            code,
            message,
        });
    }
    Ok(state)
}

unsafe extern "C" fn record_error(ctx: *mut c_void, message: FlockStr) {
    *ctx.cast::<String>() = message.to_string_lossy();
}
