#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, unit, integration and
# data-file tests. Installs what the tests need when it is missing, so it
# works on a fresh machine. Builds go to a target dir outside the clone so
# that repeated runs (and CI on this machine) reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt and clippy components"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

step "tansu (the Kafka-compatible broker of the Kafka tests)"
# Built once (about 25 minutes on 2 cores) into cargo's bin directory and
# reused afterwards; its build dir is kept so a reinstall is incremental.
if ! cargo install --list | grep -q '^tansu '; then
  CARGO_TARGET_DIR="$HOME/.cache/sluice/tansu-build" \
    cargo install tansu --locked --features dynostore
fi
export TANSU="${TANSU:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}"

step "Chromium and playwright-core (the browser test of the web UI)"
# Debian's Chromium, driven by playwright-core from npm; both stay
# installed, so later runs skip this.
if [ ! -x /usr/bin/chromium ]; then
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

step "schemathesis and openapi-spec-validator (the HTTP fuzz run, the OpenAPI check)"
# A virtualenv outside the clone; tests/http_fuzz.rs finds schemathesis
# there. Pinned so a new release cannot change what the fuzz run checks.
venv="$HOME/.cache/sluice/venv"
if [ ! -x "$venv/bin/schemathesis" ] || [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5' 'openapi-spec-validator==0.9.0'
fi
export SCHEMATHESIS="${SCHEMATHESIS:-$venv/bin/schemathesis}"

step "server/openapi.json is valid OpenAPI 3"
"$venv/bin/openapi-spec-validator" server/openapi.json

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole run: cargo prints a result per test
# binary, and the last of those (doc tests) is often empty.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
