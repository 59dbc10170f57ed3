#!/usr/bin/env bash
# The install, upgrade and purge of the Debian packages (step 6 of deploy_test.sh), run by
# it under `unshare --mount --net`: this machine's root is mounted as an overlay (every
# write lands in WORK/upper and is gone with the namespace), with a fresh /run (no systemd
# in it: the maintainer scripts skip the unit's actions, and the test does what the unit
# would) and a private loopback. Every process it starts is stopped by PID.
# Usage (inside the namespace): deploy_sandbox.sh WORK VERSION
set -euo pipefail
work=${1:?work dir}
version=${2:?version}
root="$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/ovl" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p "$root/sandbox"
mount --bind "$work/pkg" "$root/sandbox"
cp "$work/relay_0.4.0_amd64.deb" "$root/tmp/"
ip link set lo up

chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VERSION="$version" \
  bash -euo pipefail <<'SANDBOX'
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
fail() { echo "sandbox: FAIL: $*" >&2; exit 1; }
step() { echo "sandbox: $*"; }
wait_for() {  # seconds, command...: polls every 0.1 s
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}
listening() { ss -Hltn "sport = :6008" | grep -q LISTEN; }
relay_pid() { ss -Hltnp "sport = :6008" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
# A message to the node's address comes back (relay-node send --wait-reply).
echoes() {
  reply=$(relay-node send --to="$1" --text="$2" --relay=127.0.0.1:6008 --wait-reply \
    --timeout=10s 2>/tmp/send.err) || fail "no echo from $1: $(cat /tmp/send.err)"
  [[ "$reply" == *"$2"* ]] || fail "echo from $1: $reply"
}

# A developer's machine may have the packages installed: start from none (in the overlay).
dpkg --purge relay relay-server relay-tools librelay-node-dev librelay-node0 >/dev/null 2>&1 || true

step "relay 0.4.0 installed, running as its unit runs it, a node on it"
dpkg -i /tmp/relay_0.4.0_amd64.deb >/tmp/dpkg.log 2>&1 || fail "dpkg -i relay 0.4.0: $(cat /tmp/dpkg.log)"
getent passwd relay >/dev/null || fail "relay 0.4.0 made no relay user"
# The operator's settings, which every upgrade must keep.
cat >>/etc/relay/relay.conf <<CONF
--listen=127.0.0.1:6008
--port_range=21000-21003
CONF
mkdir -p /var/lib/relay /run/relay  # StateDirectory=, RuntimeDirectory=
chown relay:relay /var/lib/relay /run/relay
chmod 0700 /var/lib/relay
setpriv --reuid=relay --regid=relay --clear-groups \
  /usr/bin/relay-server --flagfile=/etc/relay/relay.conf 2>/tmp/relay.log &
pids+=($!)
old_pid=$!
wait_for 10 listening || fail "relay 0.4.0 did not listen: $(cat /tmp/relay.log)"
relay-node --relay=127.0.0.1:6008 --key=/tmp/node.key --echo >/tmp/node.out 2>/tmp/node.err &
pids+=($!)
wait_for 10 test -s /tmp/node.out || fail "the node got no address: $(cat /tmp/node.err)"
address=$(head -1 /tmp/node.out)
echoes "$address" "before the upgrade"

step "upgrade to $VERSION: the four packages over relay 0.4.0"
cd /sandbox
dpkg -i relay-server_${VERSION}_amd64.deb librelay-node0_${VERSION}_amd64.deb \
  librelay-node-dev_${VERSION}_amd64.deb relay-tools_${VERSION}_amd64.deb >/tmp/dpkg.log 2>&1 ||
  fail "dpkg -i $VERSION: $(cat /tmp/dpkg.log)"
cd /
for p in relay-server relay-tools librelay-node0 librelay-node-dev; do
  [ "$(dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $VERSION" ] ||
    fail "$p: $(dpkg-query -W -f='${Status} ${Version}' "$p")"
done
dpkg-query -W -f='${Status}' relay 2>/dev/null | grep -q "install ok installed" &&
  fail "relay 0.4.0 is still installed"
[ -f /lib/systemd/system/relay-server.service ] || fail "the unit was lost with relay 0.4.0"
dpkg-divert --list | grep -q relay-server && fail "the protective diversion was left"
[ -f /usr/lib/sysusers.d/relay-server.conf ] || fail "no sysusers file"
grep -q -- "--port_range=21000-21003" /etc/relay/relay.conf || fail "the operator's flag file changed"
[ "$(relay-server --version)" = "relay-server $VERSION" ] || fail "relay-server --version: $(relay-server --version)"
man -w relay-server relay-node relay-load >/dev/null || fail "man pages missing"
[[ "$(readlink /proc/$old_pid/exe)" == *"(deleted)" ]] || fail "the running binary was not replaced"
echoes "$address" "during the upgrade"

step "live upgrade: SIGUSR2, as systemctl reload sends it"
kill -USR2 "$old_pid"
wait_for 20 bash -c "! kill -0 $old_pid 2>/dev/null" || fail "the old relay did not hand over: $(tail -5 /tmp/relay.log)"
new_pid=$(relay_pid)
[ -n "$new_pid" ] || fail "nothing listens after the live upgrade: $(tail -5 /tmp/relay.log)"
pids+=($new_pid)
[ "$(readlink /proc/$new_pid/exe)" = /usr/bin/relay-server ] || fail "the new relay runs $(readlink /proc/$new_pid/exe)"
[ "$(head -1 /tmp/node.out)" = "$address" ] || fail "the node's address changed"
kill -0 "${pids[1]}" || fail "the node lost its relay in the live upgrade: $(cat /tmp/node.err)"
echoes "$address" "after the live upgrade"

step "the echo example, built against the installed librelay-node-dev"
g++ -std=c++17 /usr/share/doc/librelay-node-dev/examples/echo_node.cc \
  $(pkg-config --cflags --libs relay-node) -o /tmp/echo_node || fail "echo_node does not build"
/tmp/echo_node 127.0.0.1:6008 >/tmp/echo.out 2>/tmp/echo.err &
pids+=($!)
wait_for 10 test -s /tmp/echo.out || fail "echo_node got no address: $(cat /tmp/echo.err)"
echoes "$(head -1 /tmp/echo.out)" "hello from the -dev package"

step "purge"
kill "${pids[@]}" 2>/dev/null || true
wait_for 30 bash -c "! kill -0 $new_pid 2>/dev/null" || fail "the relay did not stop"
files=$(dpkg -L relay-server relay-tools librelay-node0 librelay-node-dev | sort -u)
dpkg --purge relay-server relay-tools librelay-node-dev librelay-node0 >/tmp/dpkg.log 2>&1 ||
  fail "dpkg --purge: $(cat /tmp/dpkg.log)"
for f in $files; do
  [ -d "$f" ] && continue  # shared folders (/usr/bin) stay
  [ -e "$f" ] && fail "purge left $f"
done
for f in /etc/relay /var/lib/relay /var/log/relay /lib/systemd/system/relay-server.service; do
  [ -e "$f" ] && fail "purge left $f"
done
dpkg -l | grep -E "^.i +(relay|librelay)" && fail "packages left installed"
step "ok"
SANDBOX
