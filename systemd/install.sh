#!/usr/bin/env bash
# Install or uninstall ANGES: binaries, systemd units, sysusers.d/tmpfiles.d entries, D-Bus
# policy, documentation and the pre-trained models fine-tuning starts from by default
# ($PREFIX/share/anges/models, found by anges-train beside its bin/). Called by `make install` / `make uninstall`:
#
#   systemd/install.sh install   DESTDIR PREFIX
#   systemd/install.sh uninstall DESTDIR PREFIX
#
# DESTDIR (may be empty) is prepended to every path, for packaging. PREFIX defaults to /usr/local.
# Units are rewritten to run $PREFIX/bin/anges-meterd. With an empty DESTDIR on a machine booted
# with systemd, the users/directories are created and systemd and D-Bus are reloaded; nothing is
# enabled or started (run `systemctl enable --now anges-meterd` yourself).
set -euo pipefail

action=${1:-}
destdir=${2:-}
prefix=${3:-/usr/local}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
target=${CARGO_TARGET_DIR:-$repo/target}/release

case "$prefix" in
  /*) ;;
  *) echo "install.sh: PREFIX must be absolute, got '$prefix'" >&2; exit 2 ;;
esac

bindir=$prefix/bin
unitdir=$prefix/lib/systemd/system
sysusersdir=$prefix/lib/sysusers.d
tmpfilesdir=$prefix/lib/tmpfiles.d
docdir=$prefix/share/doc/anges
modeldir=$prefix/share/anges/models
# dbus-daemon reads /usr/share/dbus-1/system.d and /etc/dbus-1/system.d, not /usr/local/share.
if [ "$prefix" = /usr ]; then
  dbusdir=/usr/share/dbus-1/system.d
else
  dbusdir=/etc/dbus-1/system.d
fi

binaries=(anges-meterd anges-meter anges-train)
docs=(security.md serving.md architecture.md)

live() {
  # Only touch the running system when installing into / on a systemd machine.
  [ -z "$destdir" ] && [ -d /run/systemd/system ] && [ "$(id -u)" = 0 ]
}

do_install() {
  install -d "$destdir$bindir" "$destdir$unitdir" "$destdir$sysusersdir" \
    "$destdir$tmpfilesdir" "$destdir$dbusdir" "$destdir$docdir"
  for b in "${binaries[@]}"; do
    if [ -x "$target/$b" ]; then
      install -m 0755 "$target/$b" "$destdir$bindir/$b"
    else
      echo "install.sh: $target/$b not built; skipping (run 'make build')" >&2
    fi
  done
  for u in anges-meterd.service anges-meterd.socket; do
    sed "s|/usr/local/bin/|$bindir/|g" "$here/$u" >"$destdir$unitdir/$u.tmp"
    chmod 0644 "$destdir$unitdir/$u.tmp"
    mv "$destdir$unitdir/$u.tmp" "$destdir$unitdir/$u"
  done
  install -m 0644 "$here/anges.sysusers" "$destdir$sysusersdir/anges.conf"
  install -m 0644 "$here/anges.tmpfiles" "$destdir$tmpfilesdir/anges.conf"
  install -m 0644 "$here/org.anges.Meter1.conf" "$destdir$dbusdir/org.anges.Meter1.conf"
  for d in "${docs[@]}"; do
    if [ -f "$repo/docs/$d" ]; then install -m 0644 "$repo/docs/$d" "$destdir$docdir/$d"; fi
  done
  # The shipped checkpoints (files and Hugging Face folders), as they are in the repository.
  (cd "$repo/models" && find . -type f ! -name '*.resume.safetensors' ! -name resume.safetensors) |
    while read -r f; do install -D -m 0644 "$repo/models/$f" "$destdir$modeldir/$f"; done
  if live; then
    systemd-sysusers "$sysusersdir/anges.conf"
    systemd-tmpfiles --create "$tmpfilesdir/anges.conf"
    systemctl daemon-reload
    systemctl reload dbus.service 2>/dev/null || true
    echo "installed; start with: systemctl enable --now anges-meterd.socket anges-meterd.service"
    echo "let a user query the meter: usermod -aG anges USER"
  else
    echo "installed under $destdir$prefix"
  fi
}

do_uninstall() {
  if live; then
    systemctl disable --now anges-meterd.service anges-meterd.socket 2>/dev/null || true
  fi
  for b in "${binaries[@]}"; do rm -f "$destdir$bindir/$b"; done
  rm -f "$destdir$unitdir/anges-meterd.service" "$destdir$unitdir/anges-meterd.socket" \
    "$destdir$sysusersdir/anges.conf" "$destdir$tmpfilesdir/anges.conf" \
    "$destdir$dbusdir/org.anges.Meter1.conf"
  for d in "${docs[@]}"; do rm -f "$destdir$docdir/$d"; done
  rmdir "$destdir$docdir" 2>/dev/null || true
  rm -rf "$destdir$modeldir"
  rmdir "$destdir$prefix/share/anges" 2>/dev/null || true
  if live; then
    systemctl daemon-reload
    systemctl reload dbus.service 2>/dev/null || true
  fi
  # State (/var/lib/anges), the group and the user are left in place, as packages do.
  echo "uninstalled from $destdir$prefix"
}

case "$action" in
  install) do_install ;;
  uninstall) do_uninstall ;;
  *) echo "usage: $0 install|uninstall DESTDIR [PREFIX]" >&2; exit 2 ;;
esac
