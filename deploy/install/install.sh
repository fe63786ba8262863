#!/usr/bin/env bash
# Installs, upgrades or removes a KVS coordinator or agent on a Debian or Ubuntu VM. Idempotent:
# re-running it replaces only what differs (binaries, unit, config, keys) and restarts the service
# only when something changed.
#
#   install.sh --role agent --coordinator https://10.0.1.10:7400 --zone a --address 10.0.1.21 \
#              --join-token-file /root/join-token --ca-file /root/ca.pem [--probe-key "ssh-ed25519 ..."]
#   install.sh --role coordinator --node-id 1 --cluster-id prod --listen 10.0.1.10:7400 \
#              --raft-listen 10.0.1.10:7500 [--tls-name kvs.example.com]
#   install.sh --role coordinator --node-id 2 --cluster-id prod --listen 10.0.2.10:7400 \
#              --join https://10.0.1.10:7400 --ca-file ca.pem --admin-token-file admin-token
#   install.sh --role agent --uninstall [--purge]
#
# What it does (every path below is prefixed with --root DIR when given):
#   user     `kvs` (system user; runs the service and the engines); for agents with --probe-key also
#            `kvs-probe`, whose only power is the coordinators' SSH probe (`command="true"`)
#   dirs     /etc/kvs (root:kvs 0750), /var/lib/kvs/<role> (kvs 0750), /var/log/kvs (kvs 0750)
#   files    /usr/local/bin/{kvs-coordinator|kvs-agent,kvs}, /etc/systemd/system/kvs-<role>.service,
#            /etc/kvs/<role>.toml; agent: /etc/kvs/join-token (root:kvs 0640), /etc/kvs/ca.pem;
#            coordinator: seeds <data_dir>/{admin-token,join-token,probe_key} from --admin-token-file,
#            --join-token-file, --probe-key-file; with --join, /etc/kvs/ca.pem from --ca-file
#   engines  agent: Debian/Ubuntu's valkey-server and/or redis-server via apt (--engines-from-distro,
#            the default; the distro's own service on port 6379 is disabled), or existing binaries
#            (--valkey-server PATH, --redis-server PATH), or none (--no-engines)
#   systemd  daemon-reload, enable, start (restart when something changed); skipped with a note when
#            systemd is not PID 1 (chroot, container), with --no-start, and entirely with --root
#
# Every flag also reads an environment variable (flags win): KVS_ROLE, KVS_BIN_DIR, KVS_ROOT,
# KVS_NODE_ID, KVS_CLUSTER_ID, KVS_LISTEN, KVS_RAFT_LISTEN, KVS_JOIN, KVS_TLS_NAMES (comma
# separated), KVS_ADMIN_TOKEN_FILE, KVS_PROBE_KEY_FILE, KVS_COORDINATOR, KVS_ZONE, KVS_ADDRESS, KVS_HOSTNAME,
# KVS_JOIN_TOKEN, KVS_JOIN_TOKEN_FILE, KVS_CA_FILE, KVS_PROBE_KEY (newline separated), KVS_PROBE_FROM,
# KVS_VALKEY_SERVER, KVS_REDIS_SERVER. On a re-run, a config key that no flag or variable sets keeps
# its value from the installed config file.
#
# Exit status: 0 done, 1 a check failed (message on stderr), 2 bad usage.
set -euo pipefail
umask 022

readonly SCRIPT_NAME="install.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly CONNECT_TIMEOUT_SECONDS=3
readonly PROBE_USER="kvs-probe"
readonly PROBE_HOME="/var/lib/kvs-probe"

say() { printf 'kvs-install: %s\n' "$*"; }
note() { printf 'kvs-install: note: %s\n' "$*"; }
die() { printf 'kvs-install: error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'kvs-install: %s (see %s --help)\n' "$*" "$SCRIPT_NAME" >&2; exit 2; }

usage() {
    cat <<'EOF'
Usage: install.sh --role coordinator|agent [options]
       install.sh --role coordinator|agent --uninstall [--purge] [--root DIR]

Common:
  --role ROLE                coordinator or agent (env KVS_ROLE)
  --bin-dir DIR              where kvs-coordinator / kvs-agent / kvs are (default: bin/ next to this
                             script, else ../bin) (env KVS_BIN_DIR)
  --root DIR                 install into another root file system (tests, images): every path is
                             prefixed with DIR; no systemctl, no apt
  --no-start                 install and enable, but do not start or restart the service
  --uninstall                remove binaries, unit, config, keys and users; keep /var/lib/kvs
  --purge                    with --uninstall: also delete /var/lib/kvs/<role> (the data!)
  -h, --help                 this text

Coordinator:
  --node-id N                unique node id, 1.. (env KVS_NODE_ID; default 1)
  --cluster-id ID            letters, digits, dashes (env KVS_CLUSTER_ID; default kvs)
  --listen IP:PORT           admin/agent/config gRPC (env KVS_LISTEN; default <primary IP>:7400)
  --raft-listen IP:PORT      peer Raft port (env KVS_RAFT_LISTEN; default <listen IP>:7500)
  --join URL                 join the cluster of the node at https://HOST:7400 on first start instead
                             of bootstrapping a new one; needs --ca-file and --admin-token-file
                             (env KVS_JOIN)
  --ca-file FILE             with --join: the cluster CA bundle (env KVS_CA_FILE)
  --tls-name NAME            extra server certificate name, repeatable (env KVS_TLS_NAMES, comma list)
  --admin-token-file FILE    seed <data_dir>/admin-token from FILE (env KVS_ADMIN_TOKEN_FILE)
  --join-token-file FILE     seed <data_dir>/join-token from FILE (env KVS_JOIN_TOKEN_FILE)
  --probe-key-file FILE      seed <data_dir>/probe_key (ed25519, OpenSSH format) from FILE, so every
                             node probes with the same key (env KVS_PROBE_KEY_FILE); unset: the node
                             creates its own, public half in <data_dir>/probe_key.pub

Agent:
  --coordinator URL[,URL]    https://HOST:PORT of a coordinator, or a comma-separated list of
                             several (tried in turn) (env KVS_COORDINATOR)
  --zone ZONE                availability zone of this host (env KVS_ZONE)
  --address IP               address clients reach this host at (env KVS_ADDRESS; default primary IP)
  --hostname NAME            host name to register (env KVS_HOSTNAME; default the OS host name)
  --join-token TOKEN         the cluster join token (env KVS_JOIN_TOKEN)
  --join-token-file FILE     file holding it (env KVS_JOIN_TOKEN_FILE)
  --ca-file FILE             the cluster CA bundle, PEM (env KVS_CA_FILE)
  --probe-key "KEY"          the coordinators' SSH probe public key, repeatable (env KVS_PROBE_KEY)
  --probe-from LIST          addresses the probes come from, comma separated (env KVS_PROBE_FROM;
                             default the --coordinator hosts)
  --engines-from-distro      apt-get install valkey-server/redis-server when none is present (default)
  --valkey-server PATH       use this valkey-server (env KVS_VALKEY_SERVER)
  --redis-server PATH        use this redis-server (env KVS_REDIS_SERVER)
  --no-engines               install no engine
  --skip-connect-check       do not check that the coordinator accepts TCP connections
EOF
}

# ---------------------------------------------------------------------------------------------
# Arguments: flags over environment.

ROLE="${KVS_ROLE:-}"
BIN_DIR="${KVS_BIN_DIR:-}"
ROOT="${KVS_ROOT:-}"
NO_START=0
UNINSTALL=0
PURGE=0
NODE_ID="${KVS_NODE_ID:-}"
CLUSTER_ID="${KVS_CLUSTER_ID:-}"
LISTEN="${KVS_LISTEN:-}"
RAFT_LISTEN="${KVS_RAFT_LISTEN:-}"
COORDINATORS=()
JOIN="${KVS_JOIN:-}"
PROBE_KEY_SRC="${KVS_PROBE_KEY_FILE:-}"
TLS_NAMES=()
if [ -n "${KVS_TLS_NAMES:-}" ]; then IFS=',' read -r -a TLS_NAMES <<<"$KVS_TLS_NAMES"; fi
ADMIN_TOKEN_SRC="${KVS_ADMIN_TOKEN_FILE:-}"
COORDINATOR="${KVS_COORDINATOR:-}"
ZONE="${KVS_ZONE:-}"
ADDRESS="${KVS_ADDRESS:-}"
HOST_NAME="${KVS_HOSTNAME:-}"
JOIN_TOKEN="${KVS_JOIN_TOKEN:-}"
JOIN_TOKEN_SRC="${KVS_JOIN_TOKEN_FILE:-}"
CA_SRC="${KVS_CA_FILE:-}"
PROBE_KEYS=()
if [ -n "${KVS_PROBE_KEY:-}" ]; then mapfile -t PROBE_KEYS <<<"$KVS_PROBE_KEY"; fi
PROBE_FROM="${KVS_PROBE_FROM:-}"
ENGINES_MODE="distro"
VALKEY_SERVER="${KVS_VALKEY_SERVER:-}"
REDIS_SERVER="${KVS_REDIS_SERVER:-}"
SKIP_CONNECT_CHECK=0

need_value() { if [ "$#" -lt 2 ] || [ -z "$2" ]; then usage_error "$1 needs a value"; fi; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --role) need_value "$@"; ROLE="$2"; shift 2 ;;
        --bin-dir) need_value "$@"; BIN_DIR="$2"; shift 2 ;;
        --root) need_value "$@"; ROOT="$2"; shift 2 ;;
        --no-start) NO_START=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --node-id) need_value "$@"; NODE_ID="$2"; shift 2 ;;
        --cluster-id) need_value "$@"; CLUSTER_ID="$2"; shift 2 ;;
        --listen) need_value "$@"; LISTEN="$2"; shift 2 ;;
        --raft-listen) need_value "$@"; RAFT_LISTEN="$2"; shift 2 ;;
        --join) need_value "$@"; JOIN="$2"; shift 2 ;;
        --probe-key-file) need_value "$@"; PROBE_KEY_SRC="$2"; shift 2 ;;
        --tls-name) need_value "$@"; TLS_NAMES+=("$2"); shift 2 ;;
        --admin-token-file) need_value "$@"; ADMIN_TOKEN_SRC="$2"; shift 2 ;;
        --coordinator) need_value "$@"; COORDINATOR="$2"; shift 2 ;;
        --zone) need_value "$@"; ZONE="$2"; shift 2 ;;
        --address) need_value "$@"; ADDRESS="$2"; shift 2 ;;
        --hostname) need_value "$@"; HOST_NAME="$2"; shift 2 ;;
        --join-token) need_value "$@"; JOIN_TOKEN="$2"; shift 2 ;;
        --join-token-file) need_value "$@"; JOIN_TOKEN_SRC="$2"; shift 2 ;;
        --ca-file) need_value "$@"; CA_SRC="$2"; shift 2 ;;
        --probe-key) need_value "$@"; PROBE_KEYS+=("$2"); shift 2 ;;
        --probe-from) need_value "$@"; PROBE_FROM="$2"; shift 2 ;;
        --engines-from-distro) ENGINES_MODE="distro"; shift ;;
        --no-engines) ENGINES_MODE="none"; shift ;;
        --valkey-server) need_value "$@"; VALKEY_SERVER="$2"; shift 2 ;;
        --redis-server) need_value "$@"; REDIS_SERVER="$2"; shift 2 ;;
        --skip-connect-check) SKIP_CONNECT_CHECK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

case "$ROLE" in
    coordinator|agent) ;;
    "") usage_error "--role coordinator|agent is required" ;;
    *) usage_error "--role must be coordinator or agent, not '$ROLE'" ;;
esac
[ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || usage_error "--purge only goes with --uninstall"
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != "/" ] || ROOT=""
fi

# Paths inside the target system.
readonly UNIT_NAME="kvs-$ROLE.service"
readonly UNIT_PATH="/etc/systemd/system/$UNIT_NAME"
readonly CONFIG_PATH="/etc/kvs/$ROLE.toml"
readonly DATA_DIR="/var/lib/kvs/$ROLE"
readonly ROLE_BINARY="kvs-$ROLE"
readonly AGENT_JOIN_TOKEN_PATH="/etc/kvs/join-token"
readonly CA_PATH="/etc/kvs/ca.pem"

# The path of a target file on this machine.
p() { printf '%s%s' "$ROOT" "$1"; }

# ---------------------------------------------------------------------------------------------
# Preconditions.

check_root_user() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0 --role $ROLE ...)"
}

check_os() {
    local release id
    release="$(p /etc/os-release)"
    [ -r "$release" ] || release="$(p /usr/lib/os-release)"
    [ -r "$release" ] || die "cannot read /etc/os-release${ROOT:+ under $ROOT}: only Debian and Ubuntu are supported"
    # shellcheck disable=SC1090 # the file is the target system's, read in a subshell
    id="$( . "$release" && printf '%s' "${ID:-unknown}")"
    case "$id" in
        debian|ubuntu) ;;
        *) die "unsupported OS '$id' (from $release): only Debian and Ubuntu are supported" ;;
    esac
}

systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# Host and port of an https://HOST:PORT URL (IPv6 as [addr]:port); prints "HOST PORT".
url_host_port() {
    local rest="${1#https://}" host port
    rest="${rest%%/*}"
    if [[ "$rest" == \[*\]:* ]]; then
        host="${rest%%]:*}"; host="${host#[}"; port="${rest##*]:}"
    elif [[ "$rest" == *:* ]]; then
        host="${rest%:*}"; port="${rest##*:}"
    else
        host="$rest"; port=443
    fi
    printf '%s %s\n' "$host" "$port"
}

# The first coordinator must accept TCP connections (the agent registers through it first).
check_coordinator_reachable() {
    local host port
    read -r host port < <(url_host_port "${COORDINATORS[0]}")
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
    if ! timeout "$CONNECT_TIMEOUT_SECONDS" bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
        die "cannot reach the coordinator at $host:$port (no TCP connection within ${CONNECT_TIMEOUT_SECONDS}s): check --coordinator, the coordinator's service and the firewall/security groups between this host and it; --skip-connect-check installs anyway"
    fi
    say "coordinator $host:$port accepts connections"
}

# ---------------------------------------------------------------------------------------------
# Validation of values that end up in TOML (kept to simple shapes, so no escaping is needed).

valid() { [[ "$2" =~ $3 ]] || die "invalid $1 '$2': $4"; }
readonly RE_HOST='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'
readonly RE_IP='^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$'
readonly RE_SOCKET='^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
readonly RE_URL='^https://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?$'
readonly RE_PATH='^/[A-Za-z0-9._/+-]*$'

# Reads `key = "value"` (or `key = value`) from an installed config file; empty when absent.
config_get() {
    local file="$1" key="$2"
    [ -f "$file" ] || return 0
    sed -n -e "s/^$key = \"\\(.*\\)\"\$/\\1/p" -e "s/^$key = \\([^\"\\[].*\\)\$/\\1/p" "$file" | head -n 1
}

primary_ip() {
    local ip=""
    if command -v ip >/dev/null 2>&1; then
        # A route lookup only: no packet is sent.
        ip="$(ip -4 route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1)"
    fi
    if [ -z "$ip" ] && command -v hostname >/dev/null 2>&1; then
        ip="$(hostname -I 2>/dev/null | awk '{print $1}')"
    fi
    printf '%s' "$ip"
}

# ---------------------------------------------------------------------------------------------
# Files: install only what differs, and count the changes (a restart follows any change).

CHANGED=0
UNCHANGED=0

# install_content DEST MODE OWNER:GROUP < content
install_content() {
    local dest="$1" mode="$2" owner="$3" target tmp
    target="$(p "$dest")"
    tmp="$(mktemp "$(dirname "$target")/.kvs-install.XXXXXX")"
    cat >"$tmp"
    install_prepared "$tmp" "$dest" "$mode" "$owner"
}

# install_file SRC DEST MODE OWNER:GROUP
install_file() {
    local src="$1" dest="$2" mode="$3" owner="$4" target tmp
    target="$(p "$dest")"
    tmp="$(mktemp "$(dirname "$target")/.kvs-install.XXXXXX")"
    cp "$src" "$tmp"
    install_prepared "$tmp" "$dest" "$mode" "$owner"
}

# Moves a prepared temp file into place (rename: atomic, and safe for a running binary) unless the
# destination already has the same content; fixes mode and owner either way.
install_prepared() {
    local tmp="$1" dest="$2" mode="$3" owner="$4" target
    target="$(p "$dest")"
    if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
        rm -f "$tmp"
        UNCHANGED=$((UNCHANGED + 1))
    else
        if [ -e "$target" ]; then say "updated $dest"; else say "installed $dest"; fi
        mv -f "$tmp" "$target"
        CHANGED=$((CHANGED + 1))
    fi
    chmod "$mode" "$target"
    chown "$(numeric_owner "$owner")" "$target"
}

# user:group by name → uid:gid as numbers, looked up in the target's passwd/group (works with --root).
numeric_owner() {
    local user="${1%%:*}" group="${1##*:}" uid gid
    uid="$(awk -F: -v n="$user" '$1 == n { print $3 }' "$(p /etc/passwd)")"
    gid="$(awk -F: -v n="$group" '$1 == n { print $3 }' "$(p /etc/group)")"
    if [ -z "$uid" ] || [ -z "$gid" ]; then die "no user '$user' or group '$group' in $(p /etc/passwd)"; fi
    printf '%s:%s' "$uid" "$gid"
}

ensure_dir() {
    local dir="$1" mode="$2" owner="$3"
    if [ ! -d "$(p "$dir")" ]; then
        say "created $dir"
        mkdir -p "$(p "$dir")"
    fi
    chmod "$mode" "$(p "$dir")"
    chown "$(numeric_owner "$owner")" "$(p "$dir")"
}

user_exists() { grep -q "^$1:" "$(p /etc/passwd)" 2>/dev/null; }

ensure_user() {
    local name="$1" home="$2" shell="$3" comment="$4"
    if ! user_exists "$name"; then
        useradd ${ROOT:+--root "$ROOT"} --system --user-group --no-log-init --no-create-home \
            --home-dir "$home" --shell "$shell" --comment "$comment" "$name"
        say "created user $name"
    fi
}

# ---------------------------------------------------------------------------------------------
# Binaries, unit, engines.

find_bin_dir() {
    local dir
    if [ -n "$BIN_DIR" ]; then
        [ -x "$BIN_DIR/$ROLE_BINARY" ] || die "no executable $ROLE_BINARY in --bin-dir $BIN_DIR"
        printf '%s' "$BIN_DIR"
        return
    fi
    for dir in "$SCRIPT_DIR/bin" "$SCRIPT_DIR/../bin"; do
        if [ -x "$dir/$ROLE_BINARY" ]; then printf '%s' "$dir"; return; fi
    done
    die "no $ROLE_BINARY next to this script (looked in $SCRIPT_DIR/bin and $SCRIPT_DIR/../bin): pass --bin-dir DIR"
}

find_unit_source() {
    local dir
    for dir in "$SCRIPT_DIR/systemd" "$SCRIPT_DIR/../systemd"; do
        if [ -f "$dir/$UNIT_NAME" ]; then printf '%s' "$dir/$UNIT_NAME"; return; fi
    done
    die "no $UNIT_NAME next to this script (looked in $SCRIPT_DIR/systemd and $SCRIPT_DIR/../systemd)"
}

install_binaries() {
    local dir="$1"
    install_file "$dir/$ROLE_BINARY" "/usr/local/bin/$ROLE_BINARY" 0755 root:root
    if [ -x "$dir/kvs" ]; then
        install_file "$dir/kvs" /usr/local/bin/kvs 0755 root:root
    fi
}

# The first of NAME in the target's usual binary directories, as a target path.
find_engine() {
    local name="$1" dir
    for dir in /usr/local/bin /usr/bin /usr/sbin; do
        if [ -x "$(p "$dir/$name")" ]; then printf '%s' "$dir/$name"; return; fi
    done
}

apt_available() { apt-cache show "$1" >/dev/null 2>&1; }

install_distro_engines() {
    local packages=() package
    if [ -n "$(find_engine valkey-server)" ] || [ -n "$(find_engine redis-server)" ]; then
        return
    fi
    if [ -n "$ROOT" ]; then
        note "--root: no engine is installed into $ROOT (install valkey-server or redis-server in the image, or pass --valkey-server/--redis-server)"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install valkey-server or redis-server by hand, or pass --no-engines"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt_available valkey-server && ! apt_available redis-server; then
        say "apt-get update (no engine package in the package lists)"
        apt-get update -qq
    fi
    for package in valkey-server redis-server; do
        if apt_available "$package"; then packages+=("$package"); fi
    done
    [ "${#packages[@]}" -gt 0 ] || die "neither valkey-server nor redis-server is available from apt: install one by hand and pass --valkey-server/--redis-server"
    say "apt-get install ${packages[*]}"
    apt-get install -y -qq --no-install-recommends "${packages[@]}"
    # The packages start their own server on 127.0.0.1:6379; KVS runs its own instances instead.
    for package in "${packages[@]}"; do
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now "$package.service" >/dev/null 2>&1 || true
        fi
    done
}

# Sets VALKEY_SERVER / REDIS_SERVER to the engines the config names.
resolve_engines() {
    local config="$1"
    [ -n "$VALKEY_SERVER" ] || VALKEY_SERVER="$(config_get "$config" valkey_server)"
    [ -n "$REDIS_SERVER" ] || REDIS_SERVER="$(config_get "$config" redis_server)"
    case "$ENGINES_MODE" in
        distro)
            install_distro_engines
            [ -n "$VALKEY_SERVER" ] || VALKEY_SERVER="$(find_engine valkey-server)"
            [ -n "$REDIS_SERVER" ] || REDIS_SERVER="$(find_engine redis-server)"
            ;;
        none) ;;
    esac
    local path
    for path in "$VALKEY_SERVER" "$REDIS_SERVER"; do
        [ -z "$path" ] && continue
        valid "engine path" "$path" "$RE_PATH" "must be an absolute path"
        [ -x "$(p "$path")" ] || die "engine $path is not an executable file${ROOT:+ under $ROOT}"
    done
    if [ -z "$VALKEY_SERVER" ] && [ -z "$REDIS_SERVER" ]; then
        note "no engine binary configured: the agent will search PATH for valkey-server and redis-server"
    fi
}

# ---------------------------------------------------------------------------------------------
# Config files.

# Fills in and validates the coordinator's values (before anything is installed).
prepare_coordinator_values() {
    local config="$1" name
    [ -n "$NODE_ID" ] || NODE_ID="$(config_get "$config" node_id)"
    [ -n "$NODE_ID" ] || NODE_ID=1
    [ -n "$CLUSTER_ID" ] || CLUSTER_ID="$(config_get "$config" cluster_id)"
    [ -n "$CLUSTER_ID" ] || CLUSTER_ID="kvs"
    [ -n "$LISTEN" ] || LISTEN="$(config_get "$config" listen)"
    if [ -z "$LISTEN" ]; then
        local ip
        ip="$(primary_ip)"
        [ -n "$ip" ] || die "cannot find this host's address: pass --listen IP:7400"
        LISTEN="$ip:7400"
    fi
    [ -n "$RAFT_LISTEN" ] || RAFT_LISTEN="$(config_get "$config" raft_listen)"
    [ -n "$RAFT_LISTEN" ] || RAFT_LISTEN="${LISTEN%:*}:7500"
    [ -n "$JOIN" ] || JOIN="$(config_get "$config" join)"
    if [ "${#TLS_NAMES[@]}" -eq 0 ] && [ -f "$config" ]; then
        local line
        line="$(sed -n 's/^tls_names = \[\(.*\)\]$/\1/p' "$config" | head -n 1)"
        if [ -n "$line" ]; then IFS=',' read -r -a TLS_NAMES <<<"${line//[\" ]/}"; fi
    fi
    [ "${#TLS_NAMES[@]}" -gt 0 ] || TLS_NAMES=(localhost)

    valid "--node-id" "$NODE_ID" '^[1-9][0-9]{0,18}$' "must be a number from 1"
    valid "--cluster-id" "$CLUSTER_ID" '^[A-Za-z0-9-]+$' "letters, digits and dashes only"
    valid "--listen" "$LISTEN" "$RE_SOCKET" "must be IP:PORT"
    valid "--raft-listen" "$RAFT_LISTEN" "$RE_SOCKET" "must be IP:PORT"
    [ "$LISTEN" != "$RAFT_LISTEN" ] || die "--listen and --raft-listen must differ"
    if [ -n "$JOIN" ]; then
        valid "--join" "$JOIN" "$RE_URL" "must be https://HOST:PORT of a node of the cluster"
        if [ -z "$CA_SRC" ] && [ ! -s "$(p "$CA_PATH")" ]; then
            die "--join needs the cluster's CA bundle: pass --ca-file FILE (ca.pem from a running node, or 'kvs ca')"
        fi
        if [ -z "$ADMIN_TOKEN_SRC" ] && [ ! -s "$(p "$DATA_DIR/admin-token")" ]; then
            die "--join needs the cluster's admin token: pass --admin-token-file FILE"
        fi
    fi
    for name in "${TLS_NAMES[@]}"; do
        valid "--tls-name" "$name" "$RE_HOST" "must be a DNS name or IP address"
    done
}

render_coordinator_config() {
    local names="" name
    for name in "${TLS_NAMES[@]}"; do
        names="${names:+$names, }\"$name\""
    done
    cat <<EOF
# kvs-coordinator config, written by install.sh (re-run it to change a value; flags not given
# keep the values below). Every key: deploy/config/coordinator.example.toml.
node_id = $NODE_ID
cluster_id = "$CLUSTER_ID"
data_dir = "$DATA_DIR"
listen = "$LISTEN"
raft_listen = "$RAFT_LISTEN"
tls_names = [$names]
EOF
    if [ -n "$JOIN" ]; then
        cat <<EOF

# First start: join the cluster through this node instead of bootstrapping a new one (ignored
# once the data dir has state). Authenticates with <data_dir>/admin-token.
join = "$JOIN"
join_ca_file = "$CA_PATH"
EOF
    fi
}

# Fills in and validates the agent's values (before anything is installed).
prepare_agent_values() {
    local config="$1"
    [ -n "$COORDINATOR" ] || COORDINATOR="$(config_get "$config" coordinator)"
    if [ -z "$COORDINATOR" ] && [ -f "$config" ]; then
        COORDINATOR="$(sed -n 's/^coordinators = \[\(.*\)\]$/\1/p' "$config" | tr -d '" ' | head -n 1)"
    fi
    [ -n "$ZONE" ] || ZONE="$(config_get "$config" zone)"
    [ -n "$ADDRESS" ] || ADDRESS="$(config_get "$config" address)"
    [ -n "$HOST_NAME" ] || HOST_NAME="$(config_get "$config" hostname)"
    [ -n "$COORDINATOR" ] || die "missing --coordinator https://HOST:7400 (the coordinator to register with)"
    [ -n "$ZONE" ] || die "missing --zone (the availability zone of this host, e.g. a or us-east-1a)"
    if [ -z "$ADDRESS" ]; then
        ADDRESS="$(primary_ip)"
        [ -n "$ADDRESS" ] || die "cannot find this host's address: pass --address IP"
        say "address: $ADDRESS (this host's primary address; --address overrides)"
    fi
    local url
    IFS=',' read -r -a COORDINATORS <<<"$COORDINATOR"
    [ "${#COORDINATORS[@]}" -gt 0 ] || die "missing --coordinator"
    for url in "${COORDINATORS[@]}"; do
        valid "--coordinator" "$url" "$RE_URL" "must be https://HOST:PORT (several: comma-separated)"
    done
    valid "--zone" "$ZONE" '^[A-Za-z0-9._-]+$' "letters, digits, dots, dashes and underscores only"
    valid "--address" "$ADDRESS" "$RE_IP" "must be an IP address"
    case "$ADDRESS" in 0.0.0.0|::) die "--address must be the address clients reach this host at, not $ADDRESS" ;; esac
    [ -z "$HOST_NAME" ] || valid "--hostname" "$HOST_NAME" "$RE_HOST" "must be a host name"
}

# One endpoint: `coordinator = ...` (every agent version reads it); several: `coordinators = [...]`.
coordinator_lines() {
    if [ "${#COORDINATORS[@]}" -eq 1 ]; then
        printf 'coordinator = "%s"' "${COORDINATORS[0]}"
    else
        local list="" url
        for url in "${COORDINATORS[@]}"; do list="${list:+$list, }\"$url\""; done
        printf 'coordinators = [%s]' "$list"
    fi
}

render_agent_config() {
    cat <<EOF
# kvs-agent config, written by install.sh (re-run it to change a value; flags not given keep the
# values below). Every key: deploy/config/agent.example.toml.
$(coordinator_lines)
ca_file = "$CA_PATH"
join_token_file = "$AGENT_JOIN_TOKEN_PATH"
zone = "$ZONE"
address = "$ADDRESS"
EOF
    [ -z "$HOST_NAME" ] || printf 'hostname = "%s"\n' "$HOST_NAME"
    printf 'data_dir = "%s"\n' "$DATA_DIR"
    if [ -n "$VALKEY_SERVER" ] || [ -n "$REDIS_SERVER" ]; then
        printf '\n[engines]\n'
        [ -z "$VALKEY_SERVER" ] || printf 'valkey_server = "%s"\n' "$VALKEY_SERVER"
        [ -z "$REDIS_SERVER" ] || printf 'redis_server = "%s"\n' "$REDIS_SERVER"
    fi
}

# ---------------------------------------------------------------------------------------------
# Secrets and keys.

# A token must be one line of printable non-space characters.
check_token() {
    local what="$1" value="$2"
    [ -n "$value" ] || die "$what is empty"
    [[ "$value" =~ ^[[:graph:]]+$ ]] || die "$what must be a single word without spaces"
}

read_token_file() {
    local what="$1" file="$2" value
    [ -r "$file" ] || die "cannot read $what file $file"
    value="$(tr -d '\r\n' <"$file")"
    check_token "$what in $file" "$value"
    printf '%s' "$value"
}

check_ca_file() {
    [ -r "$1" ] || die "cannot read --ca-file $1"
    grep -q -- '-----BEGIN CERTIFICATE-----' "$1" || die "--ca-file $1 is not a PEM certificate bundle"
}

install_agent_secrets() {
    local token=""
    if [ -n "$JOIN_TOKEN" ]; then
        token="$JOIN_TOKEN"; check_token "--join-token" "$token"
    elif [ -n "$JOIN_TOKEN_SRC" ]; then
        token="$(read_token_file "--join-token-file" "$JOIN_TOKEN_SRC")"
    elif [ ! -s "$(p "$AGENT_JOIN_TOKEN_PATH")" ]; then
        die "missing join token: pass --join-token-file FILE (or --join-token TOKEN); the coordinator wrote it to <data_dir>/join-token (default /var/lib/kvs/coordinator/join-token)"
    fi
    if [ -n "$token" ]; then
        printf '%s\n' "$token" | install_content "$AGENT_JOIN_TOKEN_PATH" 0640 root:kvs
    fi

    if [ -n "$CA_SRC" ]; then
        check_ca_file "$CA_SRC"
        install_file "$CA_SRC" "$CA_PATH" 0644 root:root
    elif [ ! -s "$(p "$CA_PATH")" ]; then
        die "missing CA bundle: pass --ca-file FILE (the coordinator's <data_dir>/ca.pem, or the output of 'kvs ca')"
    fi
}

install_coordinator_secrets() {
    local token
    if [ -n "$CA_SRC" ]; then
        check_ca_file "$CA_SRC"
        install_file "$CA_SRC" "$CA_PATH" 0644 root:root
    fi
    if [ -n "$PROBE_KEY_SRC" ]; then
        local before=$CHANGED
        install_file "$PROBE_KEY_SRC" "$DATA_DIR/probe_key" 0600 kvs:kvs
        # The node rewrites a missing probe_key.pub from the key; a stale one would mislead.
        if [ "$CHANGED" -ne "$before" ]; then rm -f "$(p "$DATA_DIR/probe_key.pub")"; fi
    fi
    if [ -n "$ADMIN_TOKEN_SRC" ]; then
        token="$(read_token_file "--admin-token-file" "$ADMIN_TOKEN_SRC")"
        printf '%s\n' "$token" | install_content "$DATA_DIR/admin-token" 0600 kvs:kvs
    fi
    if [ -n "$JOIN_TOKEN_SRC" ] || [ -n "$JOIN_TOKEN" ]; then
        if [ -n "$JOIN_TOKEN" ]; then token="$JOIN_TOKEN"; check_token "--join-token" "$token";
        else token="$(read_token_file "--join-token-file" "$JOIN_TOKEN_SRC")"; fi
        printf '%s\n' "$token" | install_content "$DATA_DIR/join-token" 0600 kvs:kvs
    fi
}

# The probe user's authorized_keys: exactly one restricted line per --probe-key.
install_probe_keys() {
    local from="$PROBE_FROM" key type blob lines="" host _port
    [ "${#PROBE_KEYS[@]}" -gt 0 ] || return 0
    if [ -z "$from" ]; then
        local url
        for url in "${COORDINATORS[@]}"; do
            read -r host _port < <(url_host_port "$url")
            from="${from:+$from,}$host"
        done
    fi
    valid "--probe-from" "$from" '^[A-Za-z0-9.:/*?-]+(,[A-Za-z0-9.:/*?-]+)*$' "must be a comma-separated list of addresses or patterns"
    for key in "${PROBE_KEYS[@]}"; do
        [ -n "$key" ] || continue
        read -r type blob _ <<<"$key"
        case "$type" in
            ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) ;;
            *) die "--probe-key must be an OpenSSH public key line (ssh-ed25519 AAAA...), got type '$type'" ;;
        esac
        [[ "${blob:-}" =~ ^[A-Za-z0-9+/]+=*$ ]] || die "--probe-key: the key data is not base64"
        local line="restrict,command=\"true\",from=\"$from\" $type $blob $PROBE_USER"
        case "$lines" in *"$line"*) continue ;; esac
        lines+="$line"$'\n'
    done
    # /bin/sh, not nologin: sshd runs the forced command through the user's shell.
    ensure_user "$PROBE_USER" "$PROBE_HOME" /bin/sh "KVS coordinators' SSH health probe"
    # '*' (no password) rather than '!' (locked): sshd refuses key logins to locked accounts when
    # UsePAM is off.
    if [ -f "$(p /etc/shadow)" ] && ! grep -q "^$PROBE_USER:\*:" "$(p /etc/shadow)"; then
        usermod ${ROOT:+--root "$ROOT"} --password '*' "$PROBE_USER"
    fi
    if [ ! -x "$(p /usr/sbin/sshd)" ]; then
        note "no /usr/sbin/sshd${ROOT:+ under $ROOT}: the coordinators cannot probe this host until openssh-server is installed"
    fi
    ensure_dir "$PROBE_HOME" 0750 "$PROBE_USER:$PROBE_USER"
    ensure_dir "$PROBE_HOME/.ssh" 0700 "$PROBE_USER:$PROBE_USER"
    printf '%s' "$lines" | install_content "$PROBE_HOME/.ssh/authorized_keys" 0600 "$PROBE_USER:$PROBE_USER"
}

# ---------------------------------------------------------------------------------------------
# systemd.

start_service() {
    if [ -n "$ROOT" ]; then
        note "--root: $UNIT_NAME is installed under $ROOT but not enabled or started (no systemctl with --root)"
        return
    fi
    if ! command -v systemctl >/dev/null 2>&1; then
        note "no systemctl on this machine: start the service by hand: /usr/local/bin/$ROLE_BINARY --config $CONFIG_PATH"
        return
    fi
    if ! systemd_running; then
        systemctl enable "$UNIT_NAME" >/dev/null 2>&1 || true
        note "systemd is not running as PID 1 here (chroot or container): $UNIT_NAME is installed and enabled but not started; it starts at boot, or run: /usr/local/bin/$ROLE_BINARY --config $CONFIG_PATH"
        return
    fi
    systemctl daemon-reload
    systemctl enable --quiet "$UNIT_NAME"
    if [ "$NO_START" -eq 1 ]; then
        note "--no-start: $UNIT_NAME is enabled, not started (systemctl start $UNIT_NAME)"
    elif [ "$CHANGED" -gt 0 ] && systemctl is-active --quiet "$UNIT_NAME"; then
        systemctl restart "$UNIT_NAME"
        say "restarted $UNIT_NAME"
    elif ! systemctl is-active --quiet "$UNIT_NAME"; then
        systemctl start "$UNIT_NAME"
        say "started $UNIT_NAME"
    fi
}

# ---------------------------------------------------------------------------------------------
# Install and uninstall.

do_install() {
    check_os
    local bin_dir unit_src config
    bin_dir="$(find_bin_dir)"
    unit_src="$(find_unit_source)"
    config="$(p "$CONFIG_PATH")"

    # Validate every input before the first change to the system.
    if [ "$ROLE" = agent ]; then
        if [ -z "$JOIN_TOKEN" ] && [ -z "$JOIN_TOKEN_SRC" ] && [ ! -s "$(p "$AGENT_JOIN_TOKEN_PATH")" ]; then
            die "missing join token: pass --join-token-file FILE (or --join-token TOKEN); the coordinator wrote it to <data_dir>/join-token (default /var/lib/kvs/coordinator/join-token)"
        fi
        if [ -z "$CA_SRC" ] && [ ! -s "$(p "$CA_PATH")" ]; then
            die "missing CA bundle: pass --ca-file FILE (the coordinator's <data_dir>/ca.pem, or the output of 'kvs ca')"
        fi
        [ -z "$JOIN_TOKEN" ] || check_token "--join-token" "$JOIN_TOKEN"
        [ -z "$JOIN_TOKEN_SRC" ] || read_token_file "--join-token-file" "$JOIN_TOKEN_SRC" >/dev/null
        [ -z "$CA_SRC" ] || check_ca_file "$CA_SRC"
        prepare_agent_values "$config"
        [ "$SKIP_CONNECT_CHECK" -eq 1 ] || check_coordinator_reachable
        resolve_engines "$config"
        render_agent_config >"$WORK_DIR/config.toml"
    else
        prepare_coordinator_values "$config"
        [ -z "$ADMIN_TOKEN_SRC" ] || read_token_file "--admin-token-file" "$ADMIN_TOKEN_SRC" >/dev/null
        [ -z "$JOIN_TOKEN" ] || check_token "--join-token" "$JOIN_TOKEN"
        [ -z "$JOIN_TOKEN_SRC" ] || read_token_file "--join-token-file" "$JOIN_TOKEN_SRC" >/dev/null
        [ -z "$CA_SRC" ] || check_ca_file "$CA_SRC"
        if [ -n "$PROBE_KEY_SRC" ]; then
            grep -q -- '-----BEGIN OPENSSH PRIVATE KEY-----' "$PROBE_KEY_SRC" 2>/dev/null \
                || die "--probe-key-file $PROBE_KEY_SRC is not an OpenSSH private key"
        fi
        render_coordinator_config >"$WORK_DIR/config.toml"
    fi

    ensure_user kvs /var/lib/kvs /usr/sbin/nologin "KVS services and engines"
    ensure_dir /etc/kvs 0750 root:kvs
    ensure_dir /var/lib/kvs 0755 root:root
    ensure_dir "$DATA_DIR" 0750 kvs:kvs
    ensure_dir /var/log/kvs 0750 kvs:kvs
    # Data kept from an earlier install belongs to the (possibly re-created) kvs user.
    local owner
    owner="$(numeric_owner kvs:kvs)"
    if [ -n "$(find "$(p "$DATA_DIR")" ! -user "${owner%%:*}" -print -quit)" ]; then
        chown -R "$owner" "$(p "$DATA_DIR")"
        say "gave $DATA_DIR back to user kvs"
    fi
    ensure_dir /usr/local/bin 0755 root:root
    ensure_dir /etc/systemd/system 0755 root:root

    install_binaries "$bin_dir"
    install_file "$unit_src" "$UNIT_PATH" 0644 root:root
    install_file "$WORK_DIR/config.toml" "$CONFIG_PATH" 0640 root:kvs
    if [ "$ROLE" = agent ]; then
        install_agent_secrets
        install_probe_keys
    else
        install_coordinator_secrets
    fi
    start_service
    say "$ROLE installed: $CHANGED file(s) changed, $UNCHANGED unchanged (config $CONFIG_PATH, data $DATA_DIR)"
    if [ "$ROLE" = coordinator ]; then
        say "agents need the probe public key $DATA_DIR/probe_key.pub (written at first start): install.sh --role agent --probe-key \"\$(cat probe_key.pub)\""
    fi
}

remove_path() {
    if [ -e "$(p "$1")" ] || [ -L "$(p "$1")" ]; then
        rm -rf "$(p "$1")"
        say "removed $1"
    fi
}

remove_dir_if_empty() {
    if [ -d "$(p "$1")" ] && rmdir "$(p "$1")" 2>/dev/null; then say "removed $1"; fi
}

# Removes a user and its group (userdel keeps the group where login.defs lacks USERGROUPS_ENAB).
remove_user() {
    if user_exists "$1"; then
        userdel ${ROOT:+--root "$ROOT"} "$1"
        say "removed user $1"
    fi
    if grep -q "^$1:" "$(p /etc/group)" 2>/dev/null; then
        groupdel ${ROOT:+--root "$ROOT"} "$1"
    fi
}

do_uninstall() {
    local other
    if [ "$ROLE" = agent ]; then other=coordinator; else other=agent; fi
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
        if systemd_running; then
            systemctl disable --now "$UNIT_NAME" >/dev/null 2>&1 || true
        else
            systemctl disable "$UNIT_NAME" >/dev/null 2>&1 || true
        fi
    fi
    # Also remove the enable link, in case systemctl was not usable (--root).
    remove_path "/etc/systemd/system/multi-user.target.wants/$UNIT_NAME"
    remove_path "$UNIT_PATH"
    if [ -z "$ROOT" ] && systemd_running; then systemctl daemon-reload; fi
    remove_path "/usr/local/bin/$ROLE_BINARY"
    remove_path "$CONFIG_PATH"
    if [ "$ROLE" = agent ]; then
        remove_path "$AGENT_JOIN_TOKEN_PATH"
        remove_user "$PROBE_USER"
        remove_path "$PROBE_HOME"
    fi
    if [ "$PURGE" -eq 1 ]; then
        remove_path "$DATA_DIR"
        remove_dir_if_empty /var/lib/kvs
    fi
    if [ ! -e "$(p "/etc/systemd/system/kvs-$other.service")" ]; then
        remove_path "$CA_PATH"
        remove_path /usr/local/bin/kvs
        remove_path /var/log/kvs
        remove_dir_if_empty /etc/kvs
        remove_user kvs
    fi
    if [ "$PURGE" -eq 0 ] && [ -d "$(p "$DATA_DIR")" ]; then
        say "$ROLE uninstalled; kept the data in $DATA_DIR (--uninstall --purge deletes it)"
    else
        say "$ROLE uninstalled"
    fi
}

check_root_user
WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT
if [ "$UNINSTALL" -eq 1 ]; then do_uninstall; else do_install; fi
