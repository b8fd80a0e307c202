#!/bin/sh
# Writes a dependency-only copy of the Cargo workspace to OUTPUT_DIR: every member's manifest,
# Cargo.lock, and a one-line stub at the path of every target `cargo metadata` reports (libs,
# bins, tests, benches, examples, build scripts). Building that copy compiles exactly the
# dependencies of the real workspace, so the image's dependency layer is cached until a manifest
# or the lock file changes, and no target is ever listed by hand: one added to Cargo.toml is in
# the next skeleton by itself, and one declared without its source file fails here, naming it.
#
# Usage (from the workspace root): sh docker/cargo-skeleton.sh OUTPUT_DIR
# Needs only cargo and POSIX sh/sed/grep, so it runs in the slim Rust image; `--no-deps` reads no
# registry, so it works offline. OUTPUT_DIR is emptied first.
set -eu

out=${1:?usage: cargo-skeleton.sh OUTPUT_DIR}
root=$(pwd)
meta=$(cargo metadata --no-deps --format-version 1 --offline)

# Paths in the metadata are absolute; the skeleton keeps them relative to the workspace root.
# JSON string values here are plain paths (no escapes), so grep and sed can read them.
paths() {
    printf '%s' "$meta" | grep -o "\"$1\":\"[^\"]*\"" | sed "s/^\"$1\":\"//; s/\"\$//"
}
relative() {
    case $1 in
    "$root"/*) printf '%s\n' "${1#"$root"/}" ;;
    *)
        echo "cargo-skeleton: $1 is outside the workspace root $root" >&2
        exit 1
        ;;
    esac
}

rm -rf "$out"
mkdir -p "$out"
cp Cargo.toml Cargo.lock "$out/"
for f in .cargo/config.toml rust-toolchain rust-toolchain.toml; do
    if [ -f "$f" ]; then
        mkdir -p "$out/$(dirname "$f")"
        cp "$f" "$out/$f"
    fi
done

manifests=0
for m in $(paths manifest_path); do
    rel=$(relative "$m")
    mkdir -p "$out/$(dirname "$rel")"
    cp "$rel" "$out/$rel"
    manifests=$((manifests + 1))
done

targets=0
for s in $(paths src_path); do
    rel=$(relative "$s")
    mkdir -p "$out/$(dirname "$rel")"
    # A `main` satisfies every kind: bins, benches and examples need one, and a lib, a test
    # harness or a build script does not mind it.
    printf '#![allow(dead_code)]\nfn main() {}\n' >"$out/$rel"
    targets=$((targets + 1))
done

echo "cargo-skeleton: $manifests manifest(s), $targets target stub(s) in $out"
