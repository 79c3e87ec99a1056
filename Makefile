# The two commands the README starts with: `make demo` and `make test`.
.PHONY: setup build-setup demo test lint bench bench-smoke browser-setup test-browser

# Installs what a fresh machine lacks: cmake (Pingora's zlib-ng build), the Python SDK tests'
# packages, Chromium with playwright-core for the admin page test, and redis-server for the
# shared-state tests (each test starts its own server on a loopback port).
setup: build-setup browser-setup
	@command -v redis-server >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server; }
	@python3 -c "import openai, anthropic, pytest" 2>/dev/null || python3 -m pip install -q -r tests/python/requirements.txt

build-setup:
	@command -v cmake >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq cmake; }

demo: build-setup
	cargo run --release -- --demo

test: setup
	cargo build --release --workspace
	cargo test --release --workspace
	python3 -m pytest -q tests/python
	cd tests/browser && node --test --test-concurrency=1 admin.test.mjs

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings
	# The fuzz crate is its own workspace; keep it compiling against the library's API.
	cargo check --release --manifest-path fuzz/Cargo.toml
	# Dependency audit from crates.io: sources, licenses, bans (deny.toml). The advisory check
	# needs the RustSec database from GitHub, which CI cannot reach (docs/hardening.md).
	@command -v cargo-deny >/dev/null 2>&1 || cargo install --locked cargo-deny@0.20.2
	cargo deny --offline check bans licenses sources

bench:
	cargo bench --bench convert
	cargo bench --bench load

# CI keeps the benchmarks compiling and running; it asserts no timings (the load run fails only
# on failed requests).
bench-smoke:
	cargo bench --bench convert -- --quick
	cargo bench --bench load -- --quick

# The admin web page in headless Chromium: Debian's chromium driven by playwright-core
# (tests/browser, pinned in its package-lock.json). Screenshots go to target/screenshots/.
browser-setup:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }
	@test -d tests/browser/node_modules/playwright-core || (cd tests/browser && npm ci --no-audit --no-fund)

test-browser: browser-setup
	cargo build --release
	cd tests/browser && node --test --test-concurrency=1 admin.test.mjs
