# Shared settings and helpers of the dev cluster scripts (sourced, not run).
#
# One place for the pinned versions, the cache (built binaries, kept across
# runs) and the run directory (certs, kubeconfigs, etcd data, logs, pids of one
# running cluster, removed by `down`).

readonly KUBE_VERSION="${CSFLOW_KUBE_VERSION:-v1.33.13}"
readonly ARGO_MODULE=github.com/argoproj/argo-workflows/v4
readonly ARGO_VERSION=v4.0.5
readonly GGCR_VERSION=v0.22.1        # github.com/google/go-containerregistry: registry, crane
readonly PAUSE_VERSION=3.10.1        # build/pause/Makefile TAG of the Kubernetes release

CACHE_DIR="${CSFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/csflow}"
BIN_DIR="$CACHE_DIR/bin"
RUN_DIR="${CSFLOW_DEV_DIR:-$CACHE_DIR/dev-cluster}"
DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$DEV_DIR/../.." && pwd)"

# Loopback ports (overridable, so a second cluster or a busy port can move).
ETCD_PORT="${CSFLOW_DEV_ETCD_PORT:-23790}"
ETCD_PEER_PORT="${CSFLOW_DEV_ETCD_PEER_PORT:-23800}"
APISERVER_PORT="${CSFLOW_DEV_APISERVER_PORT:-16443}"
ARGO_PORT="${CSFLOW_DEV_ARGO_PORT:-12746}"
NAMESPACE="${CSFLOW_ARGO_NAMESPACE:-csflow}"

log() { echo "[$(date +%H:%M:%S)] ${0##*/}: $*" >&2; }
die() { echo "${0##*/}: error: $*" >&2; exit 1; }

# A Go toolchain: $GO, go on PATH, or the official tarball's place.
find_go() {
    if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
    return 1
}

# Builds run niced: the machine may be shared, and a cluster is never urgent.
# CSFLOW_GO_PARALLEL sets go build -p (default: go's own, the number of CPUs).
go_build_env() {
    export GOWORK=off GO111MODULE=on CGO_ENABLED="${CGO_ENABLED:-0}"
    export GOFLAGS="-buildvcs=false${CSFLOW_GO_PARALLEL:+ -p=$CSFLOW_GO_PARALLEL}"
}

# Install a built file into the cache atomically (temp name, then rename), so a
# concurrent `up` never runs a half-written binary.
install_bin() {
    local from="$1" name="$2" tmp
    mkdir -p "$BIN_DIR"
    tmp="$(mktemp "$BIN_DIR/.$name.XXXXXX")"
    cp "$from" "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$BIN_DIR/$name"
}
