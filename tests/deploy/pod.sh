# Helpers for replaying the deploy/ recipes on this machine, sourced by a
# script that runs inside `unshare --mount --net --fork` as root (see
# tests/tests/deploy.rs): each container gets a root of its own, built from
# the host's /usr (read-only, Debian as in the image) and the image's
# binaries, with exactly the mounts, users and file modes its recipe gives
# it. All containers share one private network namespace, whose /etc/hosts
# names the services.
#
# Needs: WORK (a scratch folder on the host), BIN (the built binaries).

root_of() { echo "$WORK/roots/$1"; }

# root_new NAME HOSTS...: an image-like root: /usr from the host (read-only),
# /usr/local/bin holding the image's three binaries, /etc with the image's
# user (tlog, 10001) and /etc/hosts naming HOSTS as 127.0.0.1.
root_new() {
  name="$1"; shift
  r="$(root_of "$name")"
  mkdir -p "$r"
  mount -t tmpfs -o mode=0755 "tlog-$name" "$r"
  mkdir "$r/usr" "$r/etc" "$r/dev" "$r/proc" "$r/var" "$r/root" "$r/opt"
  mount --rbind /usr "$r/usr"
  mount -o remount,bind,ro "$r/usr"
  for l in bin sbin lib lib64; do
    [ -e "/$l" ] && ln -s "usr/$l" "$r/$l"
  done
  mkdir -m 1777 "$r/tmp"
  mount --rbind /dev "$r/dev"
  mount -t proc proc "$r/proc"
  # The image's binaries, where the Containerfile installs them.
  mkdir "$r/opt/bin"
  mount --bind "$BIN" "$r/opt/bin"
  mount -t tmpfs -o mode=0755 "tlog-$name-bin" "$r/usr/local/bin"
  for b in tlog-server tlog tlog-monitor; do
    ln -s "/opt/bin/$b" "$r/usr/local/bin/$b"
  done
  cp -a /etc/ssl /etc/nsswitch.conf "$r/etc/" 2>/dev/null || true
  [ -d /etc/ca-certificates ] && cp -a /etc/ca-certificates "$r/etc/"
  printf 'root:x:0:0:root:/root:/bin/sh\ntlog:x:10001:10001::/var/lib/tlog:/usr/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\ntlog:x:10001:\n' >"$r/etc/group"
  printf '127.0.0.1 localhost %s\n' "$*" >"$r/etc/hosts"
}

# root_dir NAME PATH OWNER MODE: a directory the image itself creates.
root_dir() {
  r="$(root_of "$1")"
  install -d -o "${3%:*}" -g "${3#*:}" -m "$4" "$r$2"
}

# root_mount NAME SRC DEST ro|rw: a bind mount (file or directory), as a
# volume, a bind from the host, a ConfigMap or a Secret would be.
root_mount() {
  r="$(root_of "$1")"; src="$2"; dest="$r$3"
  if [ -d "$src" ]; then
    mkdir -p "$dest"
  else
    mkdir -p "$(dirname "$dest")"
    [ -e "$dest" ] || : >"$dest"
  fi
  mount --bind "$src" "$dest"
  if [ "$4" = ro ]; then
    mount -o remount,bind,ro "$dest"
  fi
}

# root_seal NAME: the root filesystem read-only (readOnlyRootFilesystem).
root_seal() {
  mount -o remount,ro "$(root_of "$1")"
}

# as NAME UID GID GROUPS CMD...: runs CMD in NAME's root as that user, with
# that supplementary group list (comma-separated, "-" for none), a clean
# environment and no capabilities, as a container runtime would.
as() {
  r="$(root_of "$1")"; u="$2"; g="$3"; gs="$4"; shift 4
  if [ "$u" = 0 ]; then home=/root; else home=/var/lib/tlog; fi
  if [ "$gs" = - ]; then groups=--clear-groups; else groups="--groups=$gs"; fi
  if [ "$u" = 0 ]; then
    chroot "$r" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" "$@"
  else
    chroot "$r" /usr/bin/setpriv --reuid="$u" --regid="$g" "$groups" \
      --inh-caps=-all --bounding-set=-all --no-new-privs \
      /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" "$@"
  fi
}

# until_ok SECONDS CMD...: retries CMD once a second until it succeeds.
until_ok() {
  t="$1"; shift
  i=0
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge "$t" ]; then
      echo "gave up after ${t}s: $*" >&2
      "$@" || true
      return 1
    fi
    sleep 1
  done
}
