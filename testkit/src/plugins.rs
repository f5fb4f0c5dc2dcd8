//! Plugin specs, hook requests and a runtime-free `block_on`, for the plugin tests.

pub use crate::TempDir;
use flock_plugins::testing;
use flock_plugins::*;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub fn spec(path: impl Into<PathBuf>, config: &str) -> PluginSpec {
    PluginSpec {
        path: path.into(),
        config: config.into(),
    }
}

/// A workspace plugin package loaded alone.
pub fn load(package: &str, config: &str) -> Plugins {
    Plugins::load(&[spec(testing::plugin_lib(package), config)]).unwrap_or_else(|e| panic!("{e}"))
}

/// The test-only plugin (`plugins/testkit`) configured with `config`.
pub fn testkit(config: &str) -> PluginSpec {
    spec(testing::plugin_lib("flock-plugin-testkit"), config)
}

/// `tests/c/broken.c` compiled with `args` into `dir`.
pub fn broken_plugin(dir: &TempDir, args: &[&str]) -> PathBuf {
    let out = dir.0.join(format!(
        "libbroken{}.so",
        args.join("").replace(['-', '='], "_")
    ));
    testing::build_c_plugin(Path::new(testing::BROKEN_C), &out, args)
}

/// Awaits a future on this thread, with no runtime: the runner needs none.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn registration(name: &str, fingerprint: [u8; 32]) -> Registration {
    Registration {
        name: name.into(),
        fingerprint,
        addr: addr("192.0.2.7:40000"),
        key_change: false,
    }
}

pub fn login(appliance: &str, persona: &str, client: &str) -> LoginAttempt {
    LoginAttempt {
        appliance: appliance.into(),
        persona: persona.into(),
        client: addr(client),
        origin: Some("https://flock.example".into()),
    }
}

pub fn personas(appliance: &str, ids: &[&str]) -> PersonaQuery {
    PersonaQuery {
        appliance: appliance.into(),
        client: addr("[2001:db8::5]:50000"),
        personas: ids
            .iter()
            .map(|id| Persona {
                id: (*id).into(),
                name: id.to_uppercase(),
            })
            .collect(),
    }
}
