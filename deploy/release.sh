#!/usr/bin/env bash
# Packs a KVS release tarball, the unit install.sh and the Terraform module deploy from:
#
#   kvs-<version>-linux-<arch>.tar.gz
#   └── kvs-<version>/
#       ├── install.sh            (deploy/install/install.sh: finds bin/ and systemd/ beside itself)
#       ├── bin/                  kvs-coordinator, kvs-agent, kvs
#       ├── systemd/              kvs-coordinator.service, kvs-agent.service
#       ├── config/               coordinator.example.toml, agent.example.toml
#       └── README.md             (deploy/README.md)
#
#   deploy/release.sh [--bin-dir target/release] [--version V] [--out DIR]
#
# Build the binaries first (cargo build --release). Prints the tarball's path and SHA-256 (the
# Terraform module's release_sha256).
set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly DEPLOY_DIR
BIN_DIR="$DEPLOY_DIR/../target/release"
VERSION=""
OUT_DIR="."

die() { printf 'release: error: %s\n' "$*" >&2; exit 1; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="${2:?--bin-dir needs a value}"; shift 2 ;;
        --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
        --out) OUT_DIR="${2:?--out needs a value}"; shift 2 ;;
        -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

for binary in kvs-coordinator kvs-agent kvs; do
    [ -x "$BIN_DIR/$binary" ] || die "no $BIN_DIR/$binary: run cargo build --release (or pass --bin-dir)"
done
if [ -z "$VERSION" ]; then
    # "kvs-agent 0.1.0" → 0.1.0
    VERSION="$("$BIN_DIR/kvs-agent" --version 2>/dev/null | awk '{print $2}')"
    [ -n "$VERSION" ] || die "cannot read the version from kvs-agent --version: pass --version"
fi
[[ "$VERSION" =~ ^[A-Za-z0-9._+-]+$ ]] || die "invalid version '$VERSION'"

arch="$(uname -m)"
case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
name="kvs-$VERSION"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
tarball="$OUT_DIR/$name-linux-$arch.tar.gz"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin" "$stage/$name/systemd" "$stage/$name/config"
install -m 0755 "$DEPLOY_DIR/install/install.sh" "$stage/$name/install.sh"
for binary in kvs-coordinator kvs-agent kvs; do
    install -m 0755 "$BIN_DIR/$binary" "$stage/$name/bin/$binary"
done
install -m 0644 "$DEPLOY_DIR"/systemd/*.service "$stage/$name/systemd/"
install -m 0644 "$DEPLOY_DIR"/config/*.example.toml "$stage/$name/config/"
install -m 0644 "$DEPLOY_DIR/README.md" "$stage/$name/README.md"

# Reproducible: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$stage" -cf - "$name" | gzip -n >"$tarball"
printf '%s\n' "$tarball"
sha256sum "$tarball" | awk '{print "sha256 " $1}'
