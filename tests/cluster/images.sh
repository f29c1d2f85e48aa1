#!/usr/bin/env bash
# Nova's two images, built here with buildah from the repository's own Dockerfiles (the same files
# that build the images users pull; only build arguments differ), for the real-kubelet node:
#
#   tests/cluster/images.sh              # base, pause, operator, trainer (CPU) into the cache
#   tests/cluster/images.sh --print-dir  # prints the folder of the archives and exits
#
# No registry is reachable for base images, so the base is made from Debian's packages with
# mmdebstrap (trixie: Python 3.13, which `requires-python >= 3.12` accepts) with a venv at
# /opt/python on PATH (Debian's Python is "externally managed"), and the pause image from the
# pause binary build.sh compiles. Each image is cached as a docker-archive named by a hash of its
# inputs (Dockerfile, pyproject, the three packages' sources, build args, base), in
# ${NOVA_CACHE:-~/.cache/nova}/images, with `<name>.ref` holding the tag inside it; buildah's own
# storage (layers) lives there too, so an unchanged image costs nothing and a changed one reuses
# the layers before its first changed step. The CUDA trainer image users pull builds from the same
# Dockerfile with its defaults (README, "Images").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
CACHE_ROOT="${NOVA_CACHE:-$HOME/.cache/nova}"
OUT="$CACHE_ROOT/images"
BIN="$CACHE_ROOT/k8s-$K8S_VERSION/bin"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$OUT"; exit 0; fi

# RUN steps need an OCI runtime: the runc build.sh built (Debian's buildah only recommends one).
RUNTIME="${NOVA_BUILDAH_RUNTIME:-$BIN/runc}"
[[ -x "$RUNTIME" ]] || { echo "images.sh: $RUNTIME is missing: run tests/cluster/build.sh first" >&2; exit 1; }
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "images.sh: $tool is missing (as root: apt-get install $tool)" >&2; exit 3; }
done
mkdir -p "$OUT"
# Only root can run buildah's overlay storage and mmdebstrap's chroot mode here; one build at a time.
exec 9>"$OUT/.lock"
flock 9
RUNROOT="$(mktemp -d /tmp/nova-buildah-run.XXXXXX)"
trap 'buildah "${BUILDAH_STORE[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$RUNROOT"' EXIT
BUILDAH_STORE=(--root "$OUT/storage" --runroot "$RUNROOT" --storage-driver overlay)
bh() { nice -n "${NOVA_BUILD_NICE:-10}" buildah "${BUILDAH_STORE[@]}" "$@"; }
log() { echo "[images.sh $(date +%H:%M:%S)] $*" >&2; }
START=$(date +%s)

# Hash of files and strings: the cache key of an image.
inputs_hash() {
  { for f in "$@"; do
      if [[ -d "$f" ]]; then
        (cd "$REPO" && find "$f" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info/*' \
          -print0 | sort -z | xargs -0 sha256sum)
      elif [[ -f "$REPO/$f" ]]; then (cd "$REPO" && sha256sum "$f")
      else printf '%s\n' "$f"; fi
    done; } | sha256sum | cut -c1-16
}

# cached NAME HASH: the archive exists for this hash (prints its ref)
cached() { [[ -f "$OUT/$1-$2.tar" && -f "$OUT/$1.ref" && "$(sed -n 2p "$OUT/$1.ref")" == "$2" ]]; }

# save NAME HASH REF: write the archive, drop older ones of this name
save() {
  local tmp="$OUT/.$1-$2.tar.partial"
  rm -f "$tmp"
  bh push --quiet "$3" "docker-archive:$tmp:$3" >/dev/null
  find -H "$OUT" -maxdepth 1 -name "$1-*.tar" -delete
  # the image this one replaces goes from buildah's storage too (its layers stay while cached steps use them)
  local old; old="$(sed -n 1p "$OUT/$1.ref" 2>/dev/null || true)"
  if [[ -n "$old" && "$old" != "$3" ]]; then bh rmi "$old" >/dev/null 2>&1 || true; fi
  mv "$tmp" "$OUT/$1-$2.tar"
  printf '%s\n%s\n' "$3" "$2" > "$OUT/$1.ref"
  log "$1: $3 ($(du -m "$OUT/$1-$2.tar" | cut -f1) MB)"
}

BASE_PACKAGES="ca-certificates,python3,python3-venv,passwd,libgomp1"
build_base() {
  local h; h="$(inputs_hash "debian:$DEBIAN_SUITE" "$BASE_PACKAGES" venv:/opt/python)"
  BASE_REF="localhost/nova-python:$DEBIAN_SUITE-$h"
  if cached base "$h"; then  # the Dockerfiles build FROM it: back into buildah's storage if it went
    bh inspect --type image "$BASE_REF" >/dev/null 2>&1 || bh pull --quiet "docker-archive:$OUT/base-$h.tar" >/dev/null
    return 0
  fi
  log "base: Debian $DEBIAN_SUITE with Python (mmdebstrap)"
  local tar; tar="$(mktemp /tmp/nova-base.XXXXXX.tar)"
  nice -n "${NOVA_BUILD_NICE:-10}" mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" \
    --customize-hook='chroot "$1" python3 -m venv /opt/python' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    "$DEBIAN_SUITE" "$tar" "$DEBIAN_MIRROR"
  local c; c="$(bh from --quiet scratch)"
  bh add --quiet "$c" "$tar" / >/dev/null
  rm -f "$tar"
  bh config --env PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --env PYTHONDONTWRITEBYTECODE=1 --cmd '["python3"]' \
    --label org.opencontainers.image.description="Debian $DEBIAN_SUITE with Python in /opt/python (Nova's test base)" "$c"
  bh commit --quiet --rm "$c" "$BASE_REF" >/dev/null
  save base "$h" "$BASE_REF"
}

build_pause() {
  [[ -x "$BIN/pause" ]] || { echo "images.sh: $BIN/pause is missing: run tests/cluster/build.sh first" >&2; exit 1; }
  local h; h="$(inputs_hash "$K8S_VERSION" "$(sha256sum < "$BIN/pause")")"
  PAUSE_REF="localhost/pause:$K8S_VERSION-$h"
  cached pause "$h" && return 0
  log "pause"
  local c; c="$(bh from --quiet scratch)"
  bh copy --quiet "$c" "$BIN/pause" /pause >/dev/null
  bh config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  bh commit --quiet --rm "$c" "$PAUSE_REF" >/dev/null
  save pause "$h" "$PAUSE_REF"
}

# The host's CA bundle for RUN steps that reach the package index (a proxy may sign with its own CA).
CA=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
# README.md is copied too (pyproject's readme), but only into the wheel's metadata: not hashed, so
# that editing the README does not rebuild the images.
SOURCES=(pyproject.toml nova operator trainer_image)

build_operator() {
  local h; h="$(inputs_hash operator/Dockerfile operator/Dockerfile.dockerignore "${SOURCES[@]}" "$BASE_REF")"
  OPERATOR_REF="localhost/nova-operator:$h"
  cached operator "$h" && return 0
  log "operator image (operator/Dockerfile on $BASE_REF)"
  (cd "$REPO" && bh bud --runtime "$RUNTIME" --quiet --layers --network host "${CA[@]}" --build-arg PYTHON_IMAGE="$BASE_REF" \
    -f operator/Dockerfile -t "$OPERATOR_REF" . >/dev/null)
  save operator "$h" "$OPERATOR_REF"
}

# The CPU trainer: the CUDA image's Dockerfile on the Debian base, the `trainer` extra without `gpu`,
# no NVIDIA index, Python from the base (so no apt step).
build_trainer() {
  local TRAINER_ARGS=(--build-arg BASE_IMAGE="$BASE_REF" --build-arg PYTHON=python3 --build-arg BUILD_PACKAGES=
                      --build-arg RUNTIME_PACKAGES= --build-arg EXTRAS=trainer --build-arg EXTRA_INDEX_URL=)
  local h; h="$(inputs_hash trainer_image/Dockerfile trainer_image/Dockerfile.dockerignore "${SOURCES[@]}" \
    "${TRAINER_ARGS[*]}")"
  TRAINER_REF="localhost/nova-trainer:cpu-$h"
  cached trainer "$h" && return 0
  log "trainer image, CPU (trainer_image/Dockerfile on $BASE_REF)"
  (cd "$REPO" && bh bud --runtime "$RUNTIME" --quiet --layers --network host "${CA[@]}" "${TRAINER_ARGS[@]}" \
    -f trainer_image/Dockerfile -t "$TRAINER_REF" . >/dev/null)
  save trainer "$h" "$TRAINER_REF"
}

build_base
build_operator
build_trainer
build_pause
log "done in $(( $(date +%s) - START )) s: $OUT"
