#!/usr/bin/env bash
# Runs every test of the workspace. Installs what a fresh machine lacks first.
# Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# The browser end-to-end tests drive Debian's headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# The reverse-proxy test puts Debian's HAProxy in front of flockd; TLS tests use openssl.
[ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  echo "==> installing Debian packages: ${need_apt[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

echo "==> build"
cargo build --workspace --all-targets
echo "==> clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> doc tests"
cargo test --workspace --doc
echo "==> tests"
cargo nextest run --workspace --no-fail-fast
# Every fuzz target, briefly (its seeds first): the targets keep building and the parsers
# keep surviving fresh input. Longer runs: scripts/fuzz.sh SECONDS (fuzz/README.md).
echo "==> fuzz (${FLOCK_FUZZ_SECONDS:-10} s per target)"
scripts/fuzz.sh "${FLOCK_FUZZ_SECONDS:-10}"
