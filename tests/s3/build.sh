#!/usr/bin/env bash
# Build SeaweedFS's `weed` (the tests' S3-compatible server) from its Go module, through the Go
# module proxy only, into ${NOVA_CACHE:-$HOME/.cache/nova}/seaweedfs-<version>/bin/weed.
#
#   tests/s3/build.sh              # builds once; a warm run returns at once
#   tests/s3/build.sh --print-bin  # prints the binary's path and exits
#
# Its go.mod has replace directives, so `go install module@version` refuses it: the module's source
# is copied out of the module cache and built as the main module (its go.sum pins every dependency).
# A cold build takes 5-15 minutes on 2 cores. Exit 3: no Go toolchain.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$HERE/versions.env"
OUT="${NOVA_CACHE:-$HOME/.cache/nova}/seaweedfs-$SEAWEEDFS_VERSION"
BIN="$OUT/bin/weed"
if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi
if [[ -x "$BIN" && -f "$OUT/.version" && "$(cat "$OUT/.version")" == "$SEAWEEDFS_VERSION" ]]; then exit 0; fi
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [[ ! -x "$GO" ]]; then echo "tests/s3/build.sh: no Go toolchain (set GO=/path/to/go)" >&2; exit 3; fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
log() { echo "[s3/build.sh $(date +%H:%M:%S)] $*" >&2; }
log "weed $SEAWEEDFS_VERSION"
json="$("$GO" mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION" 2>&1)" || {
  if grep -qE 'sum\.golang\.org|verifying' <<<"$json"; then
    json="$(GOSUMDB=off "$GO" mod download -json "$SEAWEEDFS_MODULE@$SEAWEEDFS_VERSION")"
  else echo "$json" >&2; exit 1; fi
}
dir="$(printf '%s' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$dir" ]] || { echo "tests/s3/build.sh: module source not found ($json)" >&2; exit 1; }
work="$OUT/work"
rm -rf "$work"
mkdir -p "$work" "$OUT/bin"
cp -r "$dir/." "$work/"
chmod -R u+w "$work"
(cd "$work" && nice -n "${NOVA_BUILD_NICE:-10}" "$GO" build -trimpath -ldflags='-s -w' -o "$BIN.tmp" ./weed)
mv "$BIN.tmp" "$BIN"
echo "$SEAWEEDFS_VERSION" > "$OUT/.version"
rm -rf "$work"
log "built $BIN"
