#!/usr/bin/env bash
# The Docker engine and arm64 emulation that `make sam-local` and its tests
# need, on a Debian machine without systemd (CI, as root):
#
#   tools/samlocal/engine.sh install   apt-get the engine, qemu-user-static, debootstrap
#   tools/samlocal/engine.sh start     register arm64 emulation (binfmt_misc) when
#                                      the host is not arm64; start dockerd unless an
#                                      engine already answers; wait until it does
#   tools/samlocal/engine.sh stop      stop the dockerd that `start` started
#
# A developer with Docker Desktop or a running engine needs none of this.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=target/sam-local/engine
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log

say() { echo "engine: $*"; }

install() {
	local missing=()
	command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
	command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
	if [ "$(uname -m)" != aarch64 ] && [ ! -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
		missing+=(qemu-user-static)
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		say "docker.io, debootstrap and qemu-user-static are installed"
		return
	fi
	say "installing ${missing[*]} (apt-get)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

binfmt() {
	[ "$(uname -m)" = aarch64 ] && return
	local dir=/proc/sys/fs/binfmt_misc
	if [ ! -e $dir/register ]; then
		mount -t binfmt_misc binfmt_misc $dir
	fi
	if [ ! -e $dir/qemu-aarch64 ]; then
		local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
		[ -f $conf ] || { say "no $conf: install qemu-user-static" >&2; exit 1; }
		cat $conf > $dir/register
		say "registered arm64 emulation (qemu-aarch64, binfmt_misc)"
	fi
}

start() {
	binfmt
	if docker info >/dev/null 2>&1; then
		say "a Docker engine already answers"
		return
	fi
	mkdir -p "$STATE"
	say "starting dockerd (log: $LOG)"
	# Its own session, so that it outlives this script and is stopped by `stop`.
	# No userland proxy: a published port then refuses connections until the
	# container listens on it, which is what SAM waits for before it invokes (with
	# the proxy it connects at once and gives up after 3 quick tries while an
	# emulated runtime is still starting: "No response from invoke container").
	setsid dockerd --userland-proxy=false >"$LOG" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	for _ in $(seq 1 120); do
		if docker info >/dev/null 2>&1; then
			say "dockerd is up ($(docker info --format '{{.ServerVersion}}, {{.Driver}}' 2>/dev/null))"
			return
		fi
		kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { say "dockerd exited; see $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1; }
		sleep 0.5
	done
	say "dockerd did not answer within 60 s; see $LOG" >&2
	exit 1
}

stop() {
	[ -f "$PIDFILE" ] || return 0
	local pid
	pid=$(cat "$PIDFILE")
	rm -f "$PIDFILE"
	kill -0 "$pid" 2>/dev/null || return 0
	say "stopping dockerd ($pid)"
	kill -TERM "$pid"
	for _ in $(seq 1 60); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
*) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
