#!/usr/bin/env bash
# Installs codexdns as a systemd service: the `codexdns` user, /etc/codexdns/Corefile.yaml (never overwriting
# an edited one), /var/lib/codexdns, and /etc/systemd/system/codexdns.service. See docs/nas.md.
#
#   sudo ./install.sh [--tarball codexdns-X.tgz] [--prefix /usr/local] [--enable] [--dry-run]
#   DESTDIR=/tmp/root ./install.sh            # stage into a fake root (packaging, tests): touches nothing else
#
#   --tarball FILE  install the package from its tarball first (npm install -g --omit=dev into PREFIX);
#                   without it, the codexdns this script came with (or found on PATH) is used
#   --prefix DIR    npm's global prefix: the program is DIR/bin/codexdns (default: the installed one, else
#                   /usr/local)
#   --enable        enable and start the service at once (not with DESTDIR)
#   --dry-run       print what would be done, do nothing
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DESTDIR="${DESTDIR:-}"
DESTDIR="${DESTDIR%/}"
dry=0
enable=0
tarball=""
prefix=""

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while (($#)); do
  case "$1" in
    --dry-run|-n) dry=1 ;;
    --enable) enable=1 ;;
    --tarball) tarball="${2:?--tarball needs a file}"; shift ;;
    --tarball=*) tarball="${1#*=}" ;;
    --prefix) prefix="${2:?--prefix needs a folder}"; shift ;;
    --prefix=*) prefix="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'codexdns install: %s\n' "$*"; }
# Runs a command, or prints it under --dry-run.
run() {
  if ((dry)); then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
# Writes stdin to a file (mode $2), or prints what would be written under --dry-run.
write_file() {
  local file="$1" mode="$2" content
  content="$(cat)"
  if ((dry)); then printf '+ write %s (mode %s, %s bytes)\n' "$file" "$mode" "${#content}"; return; fi
  printf '%s\n' "$content" > "$file.tmp.$$"
  chmod "$mode" "$file.tmp.$$"
  mv -f "$file.tmp.$$" "$file"
}

if [[ -z "$DESTDIR" && $dry -eq 0 && "$(id -u)" != 0 ]]; then
  echo "install.sh: run as root (sudo), or with --dry-run, or with DESTDIR=/some/folder" >&2
  exit 1
fi
if [[ -n "$DESTDIR" && $enable -eq 1 ]]; then
  echo "install.sh: --enable starts the service on this machine; it makes no sense with DESTDIR" >&2
  exit 2
fi

# 1. The program.
if [[ -n "$tarball" ]]; then
  [[ -f "$tarball" ]] || { echo "install.sh: no such file: $tarball" >&2; exit 1; }
  prefix="${prefix:-/usr/local}"
  say "installing $(basename "$tarball") into ${DESTDIR}${prefix} (runtime dependencies only)"
  run mkdir -p "${DESTDIR}${prefix}"
  run npm install --global --omit=dev --no-audit --no-fund --prefix "${DESTDIR}${prefix}" "$tarball"
elif [[ -z "$prefix" ]]; then
  # Installed with `npm install -g`: this script is PREFIX/lib/node_modules/codexdns/packaging/install.sh.
  if [[ "$here" == */lib/node_modules/codexdns/packaging ]]; then
    prefix="${here%/lib/node_modules/codexdns/packaging}"
    prefix="${prefix#"$DESTDIR"}"
  elif command -v codexdns >/dev/null 2>&1; then
    prefix="$(dirname "$(dirname "$(command -v codexdns)")")"
  else
    prefix=/usr/local
  fi
fi
bin="${prefix}/bin/codexdns"
if ((dry == 0)) && [[ ! -x "${DESTDIR}${bin}" ]]; then
  say "warning: ${DESTDIR}${bin} does not exist yet: install the package (npm install -g ./codexdns-X.tgz --omit=dev, or --tarball)"
fi
say "program: ${bin}"

# 2. The user: systemd-sysusers (it also works on a fake root), else useradd.
sysusers_dir="${DESTDIR}/usr/lib/sysusers.d"
run mkdir -p "$sysusers_dir"
run install -m 0644 "$here/codexdns.sysusers" "$sysusers_dir/codexdns.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
  if [[ -n "$DESTDIR" ]]; then
    run mkdir -p "$DESTDIR/etc"
    run systemd-sysusers --root="$DESTDIR" "$sysusers_dir/codexdns.conf"
  else
    run systemd-sysusers "$sysusers_dir/codexdns.conf"
  fi
elif [[ -z "$DESTDIR" ]]; then
  if ! getent passwd codexdns >/dev/null; then
    run useradd --system --user-group --home-dir /var/lib/codexdns --no-create-home --shell /usr/sbin/nologin --comment 'codexdns DNS server' codexdns
  fi
else
  echo "install.sh: systemd-sysusers is needed to create the user in DESTDIR" >&2
  exit 1
fi

# 3. Folders. /var/lib/codexdns is also created by systemd (StateDirectory=); creating it here lets
#    `codexdns migrate` run before the first start.
run install -d -m 0755 "${DESTDIR}/etc/codexdns"
run install -d -m 0750 "${DESTDIR}/var/lib/codexdns"
owner_ids() { # uid:gid of codexdns in the (fake) root's passwd file
  local passwd="${DESTDIR}/etc/passwd"
  [[ -f "$passwd" ]] && awk -F: '$1 == "codexdns" { print $3 ":" $4 }' "$passwd"
}
if ((dry)); then
  run chown codexdns:codexdns "${DESTDIR}/var/lib/codexdns"
elif [[ "$(id -u)" == 0 ]] && ids="$(owner_ids)" && [[ -n "$ids" ]]; then
  run chown "$ids" "${DESTDIR}/var/lib/codexdns"
else
  say "${DESTDIR}/var/lib/codexdns not given to codexdns (not root, or no codexdns entry yet): systemd's StateDirectory= will"
fi

# 4. The configuration: the default one when there is none; an edited one is never replaced.
conf="${DESTDIR}/etc/codexdns/Corefile.yaml"
if [[ -e "$conf" ]]; then
  say "keeping ${conf}; the new default is ${conf}.dist"
  run install -m 0644 "$here/Corefile.yaml" "${conf}.dist"
else
  run install -m 0644 "$here/Corefile.yaml" "$conf"
fi

# 5. The unit, pointing at the program's actual path.
unit_dir="${DESTDIR}/etc/systemd/system"
run mkdir -p "$unit_dir"
sed -e "s#/usr/local/bin/codexdns#${bin}#g" "$here/codexdns.service" | write_file "$unit_dir/codexdns.service" 0644

# 6. On the real system: tell systemd, check port 53, maybe start.
if [[ -z "$DESTDIR" ]]; then
  if [[ -d /run/systemd/system ]]; then
    run systemctl daemon-reload
  fi
  if [[ -e /run/systemd/resolve/stub-resolv.conf ]] && ss -lnu 2>/dev/null | grep -q '127\.0\.0\.53%\?[a-z0-9]*:53\b'; then
    say "systemd-resolved's stub listener holds 127.0.0.53:53, and codexdns listens on 0.0.0.0:53."
    say "  Free port 53 first:  mkdir -p /etc/systemd/resolved.conf.d"
    say "    printf '[Resolve]\\nDNSStubListener=no\\n' > /etc/systemd/resolved.conf.d/codexdns.conf"
    say "    systemctl restart systemd-resolved     (docs/nas.md, 'Port 53')"
  fi
  if ((enable)); then
    run systemctl enable --now codexdns.service
    say "started: systemctl status codexdns; journalctl -u codexdns -f"
  else
    say "installed. Check the configuration, then: systemctl enable --now codexdns"
  fi
else
  say "staged into ${DESTDIR}"
fi
