#!/usr/bin/env bash
# Builds the real Kubernetes control plane the lab runs on: etcd 3.6, and at
# Kubernetes v1.37 kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kube-proxy (benchmark peer) and agnhost (the upstream e2e workload).
#
# Built once per machine with the machine's Go and the Go module proxy, cached
# outside the work tree (KNET_LAB_CACHE, default /var/cache/knet-lab) and keyed
# by version: a second run only checks that the binaries are there.
#
# Usage: e2e/control-plane/build.sh            # build what is missing, print the bin dir
set -euo pipefail

KV=${KNET_K8S_VERSION:-v1.37.2}
EV=${KNET_ETCD_VERSION:-v3.6.16}
CACHE=${KNET_LAB_CACHE:-/var/cache/knet-lab}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN="$CACHE/bin-$KV-etcd-$EV"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gocache"
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kube-proxy agnhost)
missing=()
for b in "${want[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if ((${#missing[@]} == 0)); then echo "$BIN"; exit 0; fi

log() { printf '[control-plane] %s\n' "$*" >&2; }
mkdir -p "$BIN"
start=$(date +%s)
command -v go >/dev/null || { log "go is not installed: install Go 1.26 and retry"; exit 1; }

build_etcd() {
  log "building etcd $EV"
  (cd "$HERE/etcd-wrapper" && L="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$EV" &&
    go build -p 2 -trimpath -ldflags="$L" -o "$BIN/etcd" go.etcd.io/etcd/server/v3 &&
    go build -p 2 -trimpath -ldflags="$L" -o "$BIN/etcdctl" go.etcd.io/etcd/etcdctl/v3)
}

build_k8s() {
  local minor=${KV#v1.}; minor=${minor%%.*}
  local LD="-s -w" BD
  BD=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    LD="$LD -X $p.gitVersion=$KV -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$BD"
  done
  cd "$HERE/k8s-wrapper"
  for b in "$@"; do
    local pkg=k8s.io/kubernetes/cmd/$b
    [[ $b == agnhost ]] && pkg=k8s.io/kubernetes/test/images/agnhost
    log "building $b $KV"
    go build -p 2 -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$LD" -o "$BIN/$b" "$pkg"
  done
}

[[ -x "$BIN/etcd" ]] || build_etcd
k8s=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kube-proxy agnhost; do
  [[ -x "$BIN/$b" ]] || k8s+=("$b")
done
((${#k8s[@]} == 0)) || (build_k8s "${k8s[@]}")
log "built in $(( $(date +%s) - start )) s; cache uses $(du -sh "$CACHE" | cut -f1)"
echo "$BIN"
