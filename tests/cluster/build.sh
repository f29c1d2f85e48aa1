#!/usr/bin/env bash
# Build the binaries of the test control plane from upstream Go modules (no Docker, no downloads
# of release tarballs: only the Go module proxy).
#
#   tests/cluster/build.sh            # builds into ${NOVA_CACHE:-$HOME/.cache/nova}/k8s-<v>/bin
#   tests/cluster/build.sh --print-dir  # prints that folder and exits
#
# Produces: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, helm, and kwok's
# Stage YAMLs (stages/); the real node's kubelet, containerd (+ containerd-shim-runc-v2, ctr), runc
# and pause; and Kueue's manager with its CRDs in their own folder,
# ${NOVA_CACHE:-$HOME/.cache/nova}/kueue-<v>/{bin/kueue,crds/} (`--print-kueue-dir` prints it);
# `--node-only` builds only the real node's binaries. Idempotent: a component whose binary and version stamp exist is skipped,
# so a warm run returns at once. Wrapper Go modules are generated under the cache (work/), never in
# the repository. A cold build takes tens of minutes on 2 cores.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"

CACHE_ROOT="${NOVA_CACHE:-$HOME/.cache/nova}"
OUT="$CACHE_ROOT/k8s-$K8S_VERSION"
BIN="$OUT/bin"
STAGES="$OUT/stages"
WORK="$OUT/work"
KUEUE_OUT="$CACHE_ROOT/kueue-$KUEUE_VERSION"

if [[ "${1:-}" == "--print-dir" ]]; then echo "$OUT"; exit 0; fi
if [[ "${1:-}" == "--print-kueue-dir" ]]; then echo "$KUEUE_OUT"; exit 0; fi

stamp_ok() {  # stamp_ok NAME VERSION: binary exists and was built from VERSION
  [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]
}
all_done() {
  stamp_ok etcd "$ETCD_VERSION" && stamp_ok kube-apiserver "$K8S_VERSION" &&
    stamp_ok kube-controller-manager "$K8S_VERSION" && stamp_ok kube-scheduler "$K8S_VERSION" &&
    stamp_ok kwok "$KWOK_VERSION" && stamp_ok helm "$HELM_VERSION" &&
    [[ -f "$STAGES/.version" && "$(cat "$STAGES/.version")" == "$KWOK_VERSION" ]] && kueue_done && node_done
}
node_done() {
  stamp_ok kubelet "$K8S_VERSION" && stamp_ok pause "$K8S_VERSION" && stamp_ok runc "$RUNC_VERSION" &&
    stamp_ok containerd "$CONTAINERD_VERSION" && stamp_ok containerd-shim-runc-v2 "$CONTAINERD_VERSION" &&
    stamp_ok ctr "$CONTAINERD_VERSION"
}
kueue_done() {
  [[ -x "$KUEUE_OUT/bin/kueue" && -f "$KUEUE_OUT/.version" &&
    "$(cat "$KUEUE_OUT/.version")" == "$KUEUE_VERSION" ]]
}
if all_done; then exit 0; fi

GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 3; fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:--mod=mod}"
NICE=(nice -n "${NOVA_BUILD_NICE:-10}")
PAR="${NOVA_BUILD_PAR:-2}"
mkdir -p "$BIN" "$STAGES" "$WORK"
START=$(date +%s)
log() { echo "[build.sh $(date +%H:%M:%S)] $*" >&2; }

# Run a go command, printing its combined output on stdout; if it failed because the checksum
# database (sum.golang.org) could not be reached, say so and run it again with GOSUMDB=off (the
# fallback; the wrapper's go.sum still pins what was fetched).
sumdb_fallback() {
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  if [[ $rc -ne 0 ]] && grep -qE 'sum\.golang\.org|verifying .*(dial|lookup|timeout|connect)' <<<"$out"; then
    log "checksum database unreachable; retrying with GOSUMDB=off: $*"
    out="$(GOSUMDB=off "$@" 2>&1)" && rc=0 || rc=$?
  fi
  printf '%s\n' "$out"
  return $rc
}

# Fetch a module and print the path of a field of `go mod download -json` (GoMod or Dir).
modfield() {
  local out
  out="$(sumdb_fallback "$GO" mod download -json "$1")" || { echo "$out" >&2; return 1; }
  printf '%s' "$out" | sed -n "s/^[[:space:]]*\"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p"
}

# Go + godebug lines of an upstream go.mod (a dependency's godebug line does not apply to us).
go_lines() { grep -E '^(go |godebug )' "$1"; }

build_etcd() {
  stamp_ok etcd "$ETCD_VERSION" && return 0
  log "etcd v$ETCD_VERSION"
  local gomod d="$WORK/etcd"
  gomod="$(modfield "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" GoMod)"
  mkdir -p "$d"
  { echo "module nova.test/etcdbuild"; echo; go_lines "$gomod"; echo
    echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"; echo
    echo "tool go.etcd.io/etcd/server/v3"; } > "$d/go.mod"
  (cd "$d" && sumdb_fallback "$GO" mod tidy >&2 &&
    "${NICE[@]}" "$GO" build -p "$PAR" -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION" \
      -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  echo "$ETCD_VERSION" > "$BIN/.etcd.version"
}

# The Kubernetes wrapper module (go.mod in $WORK/kube) and the ldflags stamping the version; sets
# KUBE_LD. Shared by the control plane and kubelet, so kubelet reuses the same Go build cache.
kube_wrapper() {
  local gomod d="$WORK/kube" minor staging
  gomod="$(modfield "k8s.io/kubernetes@v$K8S_VERSION" GoMod)"
  minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  # Staging modules: `k8s.io/<m> => ./staging/src/k8s.io/<m>` in upstream's go.mod; the published
  # copy of each is k8s.io/<m> v0.<minor>.<patch>.
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod")"
  [[ -n "$staging" ]] || { echo "no staging replaces found in $gomod" >&2; return 1; }
  mkdir -p "$d"
  { echo "module nova.test/kubebuild"; echo; go_lines "$gomod"; echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"; echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m v0.${K8S_VERSION#*.}"; done
    echo ")"; echo
    echo "tool ("
    echo "	k8s.io/kubernetes/cmd/kube-apiserver"
    echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
    echo "	k8s.io/kubernetes/cmd/kube-scheduler"
    echo "	k8s.io/kubernetes/cmd/kubelet"
    echo ")"; } > "$d/go.mod"
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  KUBE_LD="-s -w"
  for p in $v $c; do
    KUBE_LD+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    KUBE_LD+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  (cd "$d" && sumdb_fallback "$GO" mod tidy >&2)
}

build_kube() {
  stamp_ok kube-apiserver "$K8S_VERSION" && stamp_ok kube-controller-manager "$K8S_VERSION" &&
    stamp_ok kube-scheduler "$K8S_VERSION" && return 0
  log "kube-apiserver, kube-controller-manager, kube-scheduler v$K8S_VERSION"
  kube_wrapper
  (cd "$WORK/kube" && "${NICE[@]}" "$GO" build -p "$PAR" -trimpath -ldflags "$KUBE_LD" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler)
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    echo "$K8S_VERSION" > "$BIN/.$b.version"
  done
}

# The real node (tests/cluster/node.py): kubelet from the same wrapper module, containerd 2.x (Kubernetes
# 1.36 needs 2.2+; Debian's is 1.6/1.7) with its runc shim and ctr, runc (cgo, for seccomp: Debian's
# libseccomp-dev), and the pause binary of the sandbox image, compiled from the kubernetes module's own
# build/pause/linux/pause.c (registry.k8s.io's image cannot be pulled here).
build_kubelet() {
  stamp_ok kubelet "$K8S_VERSION" && return 0
  log "kubelet v$K8S_VERSION"
  kube_wrapper
  (cd "$WORK/kube" && "${NICE[@]}" "$GO" build -p "$PAR" -trimpath -ldflags "$KUBE_LD" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kubelet)
  echo "$K8S_VERSION" > "$BIN/.kubelet.version"
}

build_pause() {
  stamp_ok pause "$K8S_VERSION" && return 0
  log "pause (kubernetes v$K8S_VERSION build/pause)"
  local dir; dir="$(modfield "k8s.io/kubernetes@v$K8S_VERSION" Dir)"
  command -v gcc >/dev/null || { echo "build.sh: gcc is needed for the pause binary (apt-get install gcc libc6-dev)" >&2; return 1; }
  gcc -Os -static -DVERSION="v$K8S_VERSION" -o "$BIN/pause" "$dir/build/pause/linux/pause.c"
  echo "$K8S_VERSION" > "$BIN/.pause.version"
}

build_containerd() {
  stamp_ok containerd "$CONTAINERD_VERSION" && stamp_ok containerd-shim-runc-v2 "$CONTAINERD_VERSION" &&
    stamp_ok ctr "$CONTAINERD_VERSION" && return 0
  log "containerd, containerd-shim-runc-v2, ctr v$CONTAINERD_VERSION"
  local m="github.com/containerd/containerd/v2" p="github.com/containerd/containerd/v2/version"
  (cd "$WORK" && GOBIN="$BIN" sumdb_fallback "${NICE[@]}" "$GO" install -p "$PAR" -trimpath \
    -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X $p.Version=v$CONTAINERD_VERSION -X $p.Revision=v$CONTAINERD_VERSION" \
    "$m/cmd/containerd@v$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@v$CONTAINERD_VERSION" \
    "$m/cmd/ctr@v$CONTAINERD_VERSION")
  for b in containerd containerd-shim-runc-v2 ctr; do echo "$CONTAINERD_VERSION" > "$BIN/.$b.version"; done
}

build_runc() {
  stamp_ok runc "$RUNC_VERSION" && return 0
  log "runc v$RUNC_VERSION"
  [[ -f /usr/include/seccomp.h ]] || { echo "build.sh: runc needs libseccomp's headers (apt-get install libseccomp-dev)" >&2; return 1; }
  (cd "$WORK" && GOBIN="$BIN" CGO_ENABLED=1 sumdb_fallback "${NICE[@]}" "$GO" install -p "$PAR" -trimpath \
    -tags seccomp -ldflags "-s -w -X main.version=$RUNC_VERSION" \
    "github.com/opencontainers/runc@v$RUNC_VERSION")
  echo "$RUNC_VERSION" > "$BIN/.runc.version"
}

build_kwok() {
  stamp_ok kwok "$KWOK_VERSION" && return 0
  log "kwok v$KWOK_VERSION"
  (cd "$WORK" && GOBIN="$BIN" sumdb_fallback "${NICE[@]}" "$GO" install -p "$PAR" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION")
  echo "$KWOK_VERSION" > "$BIN/.kwok.version"
}

copy_stages() {
  [[ -f "$STAGES/.version" && "$(cat "$STAGES/.version")" == "$KWOK_VERSION" ]] && return 0
  local dir; dir="$(modfield "sigs.k8s.io/kwok@v$KWOK_VERSION" Dir)"
  local s="$dir/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
           pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f "$s/$f" ]] || { echo "missing stage $s/$f" >&2; return 1; }
    install -m 0644 "$s/$f" "$STAGES/$(basename "$f")"
  done
  echo "$KWOK_VERSION" > "$STAGES/.version"
}

build_helm() {
  stamp_ok helm "$HELM_VERSION" && return 0
  log "helm v$HELM_VERSION"
  (cd "$WORK" && GOBIN="$BIN" sumdb_fallback "${NICE[@]}" "$GO" install -p "$PAR" -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION")
  echo "$HELM_VERSION" > "$BIN/.helm.version"
}

# Kueue's manager (cmd/kueue) and the CRDs it serves, copied out of the module cache so that the
# tests read them from the cache folder (nothing of Kueue lives in this repository).
build_kueue() {
  kueue_done && return 0
  log "kueue v$KUEUE_VERSION"
  local dir; dir="$(modfield "sigs.k8s.io/kueue@v$KUEUE_VERSION" Dir)"
  mkdir -p "$KUEUE_OUT/bin" "$KUEUE_OUT/crds"
  install -m 0644 "$dir"/config/components/crd/bases/kueue.x-k8s.io_*.yaml "$KUEUE_OUT/crds/"
  local p="sigs.k8s.io/kueue/pkg/version"
  (cd "$WORK" && GOBIN="$KUEUE_OUT/bin" sumdb_fallback "${NICE[@]}" "$GO" install -p "$PAR" \
    -trimpath -ldflags "-s -w -X $p.GitVersion=v$KUEUE_VERSION -X $p.GitCommit=v$KUEUE_VERSION" \
    "sigs.k8s.io/kueue/cmd/kueue@v$KUEUE_VERSION")
  echo "$KUEUE_VERSION" > "$KUEUE_OUT/.version"
}

if [[ "${1:-}" == "--kueue-only" ]]; then mkdir -p "$WORK"; START=$(date +%s); build_kueue
  log "kueue done in $(( $(date +%s) - START )) s: $KUEUE_OUT"; exit 0; fi

if [[ "${1:-}" == "--node-only" ]]; then mkdir -p "$BIN" "$WORK"; START=$(date +%s)
  build_kubelet; build_pause; build_containerd; build_runc
  log "node done in $(( $(date +%s) - START )) s: $BIN"; exit 0; fi

build_etcd
build_kube
build_kwok
copy_stages
build_helm
build_kueue
build_kubelet
build_pause
build_containerd
build_runc
log "done in $(( $(date +%s) - START )) s: $BIN"
