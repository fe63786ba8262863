#!/usr/bin/env bash
# First-boot bootstrap of a KVS coordinator or agent VM on AWS, run by cloud-init (runcmd) with the
# env file the Terraform module writes (/etc/kvs-bootstrap/env, see user_data.yaml.tftpl). Safe to
# re-run by hand: install.sh is idempotent.
#
#   1. download the release tarball (s3:// with the instance role, or https://), check its SHA-256
#   2. read the tokens (and, on coordinators, the probe key) from SSM Parameter Store
#   3. coordinator 1: install.sh --role coordinator with the seeded tokens and probe key: it
#      bootstraps the cluster; then publish <data_dir>/ca.pem to SSM (everyone else fetches it there)
#      coordinator 2..n: wait for the CA in SSM, then install.sh --role coordinator --join
#      https://<coordinator 1>:7400: the node gets its certificate and asks the leader to add it
#      agent: wait for the CA in SSM, then install.sh --role agent with every coordinator endpoint
#      (zone from Terraform, address from the instance metadata, the probe public key); it checks
#      that coordinator 1 is reachable
#
# Output goes to /var/log/cloud-init-output.log.
set -euo pipefail
umask 077

readonly ENV_FILE="${1:-/etc/kvs-bootstrap/env}"
readonly RELEASE_DIR="/opt/kvs/release"
readonly CA_WAIT_SECONDS=1800
readonly INSTALL_ATTEMPTS=30

log() { printf 'kvs-bootstrap: %s\n' "$*"; }
die() { printf 'kvs-bootstrap: error: %s\n' "$*" >&2; exit 1; }

# retry N DELAY_SECONDS COMMAND...: runs COMMAND until it succeeds, at most N times.
retry() {
    local attempts="$1" delay="$2" i
    shift 2
    for ((i = 1; i <= attempts; i++)); do
        if "$@"; then return 0; fi
        log "attempt $i/$attempts failed: $*"
        sleep "$delay"
    done
    return 1
}

[ -r "$ENV_FILE" ] || die "cannot read $ENV_FILE"
# shellcheck source=/dev/null # written by cloud-init from the Terraform template
. "$ENV_FILE"
: "${KVS_BOOTSTRAP_ROLE:?}" "${KVS_RELEASE_URL:?}" "${KVS_AWS_REGION:?}" "${KVS_JOIN_TOKEN_PARAM:?}" "${KVS_CA_PARAM:?}"
export AWS_DEFAULT_REGION="$KVS_AWS_REGION"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

download_release() {
    local archive="$WORK/release.tar.gz"
    case "$KVS_RELEASE_URL" in
        s3://*) retry 10 6 aws s3 cp --only-show-errors "$KVS_RELEASE_URL" "$archive" ;;
        https://*) retry 10 6 curl -fsSL --proto '=https' -o "$archive" "$KVS_RELEASE_URL" ;;
        *) die "release URL must be s3:// or https://: $KVS_RELEASE_URL" ;;
    esac || die "cannot download $KVS_RELEASE_URL"
    if [ -n "${KVS_RELEASE_SHA256:-}" ]; then
        echo "$KVS_RELEASE_SHA256  $archive" | sha256sum --check --quiet - \
            || die "release $KVS_RELEASE_URL does not match release_sha256"
    fi
    rm -rf "$RELEASE_DIR"
    mkdir -p "$RELEASE_DIR"
    tar -xzf "$archive" -C "$RELEASE_DIR" --strip-components=1
    [ -x "$RELEASE_DIR/install.sh" ] || die "the release has no install.sh at its top level"
    log "release unpacked in $RELEASE_DIR"
}

# Waits until coordinator 1 has published the cluster CA bundle to SSM; writes it to FILE.
wait_for_ca() {
    local file="$1" waited=0
    until ssm_get "$KVS_CA_PARAM" >"$file" 2>/dev/null && grep -q 'BEGIN CERTIFICATE' "$file"; do
        [ "$waited" -lt "$CA_WAIT_SECONDS" ] || die "no CA bundle in SSM $KVS_CA_PARAM after ${CA_WAIT_SECONDS}s: is coordinator 1 up?"
        sleep 10
        waited=$((waited + 10))
    done
}

ssm_get() {
    aws ssm get-parameter --name "$1" --with-decryption --query Parameter.Value --output text
}

# Writes an SSM parameter's value to a file (0600).
ssm_to_file() {
    local value
    value="$(retry 10 6 ssm_get "$1")" || die "cannot read SSM parameter $1"
    printf '%s\n' "$value" >"$2"
}

imds() {
    local token
    token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token)"
    curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

bootstrap_coordinator() {
    : "${KVS_NODE_ID:?}" "${KVS_LISTEN_IP:?}" "${KVS_ADMIN_TOKEN_PARAM:?}" "${KVS_PROBE_KEY_PARAM:?}"
    local args=() names=() name ca="/var/lib/kvs/coordinator/ca.pem" waited=0
    ssm_to_file "$KVS_ADMIN_TOKEN_PARAM" "$WORK/admin-token"
    ssm_to_file "$KVS_JOIN_TOKEN_PARAM" "$WORK/join-token"
    ssm_to_file "$KVS_PROBE_KEY_PARAM" "$WORK/probe_key"
    args=(--role coordinator --node-id "$KVS_NODE_ID" --cluster-id "$KVS_CLUSTER_ID"
        --listen "$KVS_LISTEN_IP:7400" --raft-listen "$KVS_LISTEN_IP:7500"
        --admin-token-file "$WORK/admin-token" --join-token-file "$WORK/join-token"
        --probe-key-file "$WORK/probe_key")
    if [ -n "${KVS_JOIN:-}" ]; then
        wait_for_ca "$WORK/ca.pem"
        args+=(--join "$KVS_JOIN" --ca-file "$WORK/ca.pem")
    fi
    IFS=',' read -r -a names <<<"${KVS_TLS_NAMES:-}"
    for name in "${names[@]}"; do args+=(--tls-name "$name"); done
    "$RELEASE_DIR/install.sh" "${args[@]}"

    if [ "$KVS_NODE_ID" = 1 ]; then
        while [ ! -s "$ca" ]; do
            [ "$waited" -lt 300 ] || die "kvs-coordinator did not write $ca within 300s (journalctl -u kvs-coordinator)"
            sleep 2
            waited=$((waited + 2))
        done
        retry 10 6 aws ssm put-parameter --name "$KVS_CA_PARAM" --type String --overwrite \
            --value "file://$ca" >/dev/null || die "cannot publish the CA bundle to $KVS_CA_PARAM"
        log "published the cluster CA bundle to SSM $KVS_CA_PARAM"
    fi
}

bootstrap_agent() {
    : "${KVS_COORDINATOR:?}" "${KVS_ZONE:?}"
    local address args=()
    ssm_to_file "$KVS_JOIN_TOKEN_PARAM" "$WORK/join-token"
    # Coordinator 1 publishes the CA once it is up; agents that boot first wait for it.
    wait_for_ca "$WORK/ca.pem"
    address="$(retry 5 2 imds local-ipv4)" || die "cannot read this instance's address from the metadata service"
    args=(--role agent --coordinator "$KVS_COORDINATOR" --zone "$KVS_ZONE" --address "$address"
        --join-token-file "$WORK/join-token" --ca-file "$WORK/ca.pem")
    if [ -n "${KVS_PROBE_KEY:-}" ]; then
        args+=(--probe-key "$KVS_PROBE_KEY" --probe-from "$KVS_PROBE_FROM")
    fi
    # install.sh checks that the coordinator accepts connections: retry while it starts.
    retry "$INSTALL_ATTEMPTS" 10 "$RELEASE_DIR/install.sh" "${args[@]}" || die "install.sh failed"
}

download_release
case "$KVS_BOOTSTRAP_ROLE" in
    coordinator) bootstrap_coordinator ;;
    agent) bootstrap_agent ;;
    *) die "unknown role $KVS_BOOTSTRAP_ROLE" ;;
esac
log "$KVS_BOOTSTRAP_ROLE ready"
