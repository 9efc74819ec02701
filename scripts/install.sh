#!/usr/bin/env bash
# Builds vauchi-relay and installs it as a systemd service:
#   /usr/local/bin/vauchi-relay                 the binary (replaced atomically)
#   system user and group vauchi-relay          owner of /var/lib/vauchi-relay
#   /etc/systemd/system/vauchi-relay.service    the unit (scripts/vauchi-relay.service)
#   /etc/vauchi-relay/relay.env                 settings; written only if missing
#   /etc/vauchi-relay/relay.env.example         the example, refreshed every run
#
# Idempotent: run it again to upgrade; your relay.env is never overwritten and the
# service is neither enabled nor restarted for you. Run it from a checkout as a
# normal user (it builds, then asks sudo for the install steps) or as root.
# Options: --no-build installs target/release/vauchi-relay as it is.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin_path=/usr/local/bin/vauchi-relay
unit_path=/etc/systemd/system/vauchi-relay.service
config_dir=/etc/vauchi-relay
service_user=vauchi-relay
state_dir=/var/lib/vauchi-relay

build=true
for arg in "$@"; do
    case "$arg" in
        --no-build) build=false ;;
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "install.sh: unknown option $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [[ "$build" == true ]]; then
    if ! command -v cargo >/dev/null; then
        echo "install.sh: cargo not found; build as a normal user first, or install Rust" >&2
        exit 1
    fi
    (cd "$repo" && cargo build --release --locked --bin vauchi-relay)
fi

built="$repo/target/release/vauchi-relay"
if [[ ! -x "$built" ]]; then
    echo "install.sh: $built is missing; run without --no-build" >&2
    exit 1
fi

# The remaining steps need root. Re-run this script under sudo without rebuilding.
if [[ "$(id -u)" -ne 0 ]]; then
    exec sudo -- bash "$0" --no-build
fi

# Binary: copy beside the target, then rename over it, so a running relay keeps
# its old inode and an interrupted copy never leaves a half-written binary.
install -d -m 0755 "$(dirname "$bin_path")"
install -m 0755 "$built" "$bin_path.new"
mv -f "$bin_path.new" "$bin_path"

# System user and group, without a login shell or a home directory of its own.
if ! getent group "$service_user" >/dev/null; then
    groupadd --system "$service_user"
fi
if ! getent passwd "$service_user" >/dev/null; then
    useradd --system --gid "$service_user" --home-dir "$state_dir" --no-create-home \
        --shell /usr/sbin/nologin --comment "vauchi-relay" "$service_user"
fi

# Settings. The file may hold RELAY_METRICS_TOKEN, so only root and the service
# group can read it.
install -d -m 0750 -o root -g "$service_user" "$config_dir"
example="$(mktemp)"
trap 'rm -f "$example"' EXIT
cat >"$example" <<'ENV'
# vauchi-relay settings: one RELAY_*=value per line, read by systemd at start.
# `vauchi-relay --help` lists every variable with its default and valid values.
# An invalid value stops the relay at startup with a message naming it
# (`journalctl -u vauchi-relay`). RELAY_DATA_DIR is set by the unit
# (/var/lib/vauchi-relay); do not set it here.

# Main listener. Behind a TLS proxy on this host, listen on loopback only.
RELAY_LISTEN_ADDR=127.0.0.1:8080
# TLS is terminated by the proxy (silences the startup warning for public addresses).
#RELAY_TLS_VERIFIED=true

# Metrics (Prometheus). Set a token if this address is reachable by others.
RELAY_METRICS_ADDR=127.0.0.1:8081
#RELAY_METRICS_TOKEN=

# Capacity. Keep LimitNOFILE in the unit above RELAY_MAX_CONNECTIONS + 64.
#RELAY_MAX_CONNECTIONS=100000
# Shards: by default one per CPU of the unit's CPUAffinity. If you set it, make
# it match the CPU count there (and LimitMEMLOCK >= shards x 512K).
#RELAY_SHARDS=
#RELAY_CPU_PIN=true

# Storage and retention.
#RELAY_STORAGE_BACKEND=sqlite
#RELAY_SQLITE_SYNCHRONOUS=normal
#RELAY_BLOB_TTL_SECS=7776000

# Abuse limits.
#RELAY_RATE_LIMIT=60
#RELAY_RECOVERY_RATE_LIMIT=10
#RELAY_MAX_BLOBS_PER_USER=1000
#RELAY_MAX_STORAGE_PER_USER=50000000

# Noise NK inside the WebSocket (PROTOCOL.md §15.1). The key is made in the data
# directory on first start (relay_noise_key.bin, 0600; back it up); clients get
# the public key from the metrics listener's /pubkey.
#RELAY_NOISE_STATIC_KEY=
#RELAY_REQUIRE_NOISE_ENCRYPTION=false

# Log verbosity.
#RUST_LOG=info
ENV
install -m 0640 -o root -g "$service_user" "$example" "$config_dir/relay.env.example"
if [[ ! -e "$config_dir/relay.env" ]]; then
    install -m 0640 -o root -g "$service_user" "$example" "$config_dir/relay.env"
    echo "install.sh: wrote $config_dir/relay.env; review it before starting"
fi

# Unit.
install -m 0644 "$repo/scripts/vauchi-relay.service" "$unit_path"
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
fi

echo "install.sh: installed $("$bin_path" --version)"
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet vauchi-relay; then
    echo "  running: restart to use the new binary: systemctl restart vauchi-relay"
else
    echo "  start it: systemctl enable --now vauchi-relay"
fi
echo "  logs:     journalctl -u vauchi-relay -f"
