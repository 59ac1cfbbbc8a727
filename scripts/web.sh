#!/usr/bin/env bash
# Builds the page in web/ (wgrad compiled to WebAssembly, trained on the browser's WebGPU)
# and serves it or tests it.
#
#   scripts/web.sh build   # web/pkg: the wasm module and its JavaScript glue
#   scripts/web.sh serve   # build, then serve on http://127.0.0.1:8000/web/index.html
#   scripts/web.sh test    # build, then train in headless chromium against the CPU backend
#
# Needs the wasm32-unknown-unknown target and wasm-bindgen-cli of the version web/Cargo.toml
# pins; the test also needs node, npm and chromium (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

build() {
    cargo build --release --target wasm32-unknown-unknown --manifest-path web/Cargo.toml --lib
    wasm-bindgen --target web --out-dir web/pkg \
        "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/wgrad_web.wasm"
    echo "web/pkg/wgrad_web_bg.wasm: $(stat -c %s web/pkg/wgrad_web_bg.wasm) bytes"
}

case "${1:-build}" in
    build) build ;;
    serve)
        build
        echo "open http://127.0.0.1:8000/web/index.html (a browser with WebGPU; Ctrl-C stops)"
        python3 -m http.server 8000 --bind 127.0.0.1
        ;;
    test)
        build
        # The same run natively on the CPU backend, then its first losses for the browser.
        cargo test --release --manifest-path web/Cargo.toml
        mkdir -p "$CARGO_TARGET_DIR/web"
        "$CARGO_TARGET_DIR/release/reference" "$CARGO_TARGET_DIR/web/reference.json" mlp
        (cd web/test && npm ci --no-audit --no-fund --silent)
        node web/test/run.mjs "$CARGO_TARGET_DIR/web/reference.json" --model mlp
        ;;
    *) echo "usage: scripts/web.sh build|serve|test" >&2; exit 2 ;;
esac
