#!/usr/bin/env bash
# Builds the knet snap from this repository with Debian tools only (cargo, mksquashfs from
# squashfs-tools, dpkg); snapcraft is not needed. The layout is what snapd expects of a
# classic snap: bin/knet, meta/snap.yaml (the same apps as snap/snapcraft.yaml) and
# meta/hooks/{install,remove}.
#
#   snap/local/build-snap.sh [--binary PATH] [--out DIR]
#
#   --binary PATH   package this knet binary instead of running `cargo build --release`
#   --out DIR       where to write knet_<version>_<arch>.snap (default: the repo's target/snap)
#
# Install the result with `sudo snap install --classic --dangerous knet_*.snap`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary=""
out="$repo/target/snap"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done

if ! command -v mksquashfs >/dev/null; then
    echo "mksquashfs not found: install squashfs-tools (sudo apt-get install squashfs-tools)" >&2
    exit 69
fi

if [ -z "$binary" ]; then
    (cd "$repo" && cargo build --release -p knet)
    binary="$repo/target/release/knet"
fi
[ -x "$binary" ] || { echo "$binary is not an executable" >&2; exit 66; }

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
[ -n "$version" ] || { echo "cannot read the workspace version from Cargo.toml" >&2; exit 65; }

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$binary" "$stage/bin/knet"
install -D -m 0755 "$repo/snap/hooks/install" "$stage/meta/hooks/install"
install -D -m 0755 "$repo/snap/hooks/remove" "$stage/meta/hooks/remove"

# meta/snap.yaml: snapcraft.yaml minus the build parts, plus the version and architecture.
cat > "$stage/meta/snap.yaml" <<YAML
name: knet
version: '$version'
summary: All of a Kubernetes node's networking in one binary
description: |
  knet bootstraps a node (sudo knet bootstrap) and runs one daemon that provides pod
  networking and service load-balancing, network policy, cluster DNS, load balancers,
  ingress and gateway.
license: Apache-2.0
base: core24
grade: devel
confinement: classic
architectures:
- $arch
apps:
  knet:
    command: bin/knet
  daemon:
    command: bin/knet daemon
    daemon: simple
    install-mode: disable
    restart-condition: always
    restart-delay: 2s
YAML

mkdir -p "$out"
snap="$out/knet_${version}_${arch}.snap"
# The options snapd's own `snap pack` uses: xz, no fragments, no xattrs, files owned by root.
mksquashfs "$stage" "$snap" -noappend -comp xz -no-fragments -no-xattrs -all-root -quiet >/dev/null
echo "built $snap ($(du -h "$snap" | cut -f1))"
