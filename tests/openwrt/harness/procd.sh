# shellcheck shell=ash
# A stand-in for OpenWrt's /lib/functions/procd.sh that records every call in
# $HARNESS_LOG and keeps a model of procd's state in $HARNESS_STATE:
#   running/<instance>   the definition of each instance procd runs
# `procd_close_service set` compares the declared instances with the running ones the
# way procd does (an unchanged definition keeps running, a changed one restarts, a
# missing one stops) and records the outcome as `procd-event` lines.
# Instance names are plain words here ([A-Za-z0-9_]), as NetPath uses them.

# procd stops an instance with SIGTERM. The harness starts no process, but a test may
# stand in for the agent with one of its own and name it in the instance's pidfile.
harness_stop_instance() {
	local name="$1" pidfile pid
	harness_record procd-event stop "$name"
	pidfile="$(sed -n 's/^pidfile\t//p' "$HARNESS_STATE/running/$name")"
	rm -f "$HARNESS_STATE/running/$name"
	[ -n "$pidfile" ] && [ -f "$pidfile" ] || return 0
	read -r pid < "$pidfile"
	kill -TERM "$pid" 2>/dev/null
	return 0
}

procd_lock() {
	return 0
}

procd_open_service() {
	harness_record procd_open_service "$@"
	rm -rf "$HARNESS_STATE/declared"
	mkdir -p "$HARNESS_STATE/declared" "$HARNESS_STATE/running"
	HARNESS_INSTANCE_COUNT=0
}

procd_open_instance() {
	harness_record procd_open_instance "$@"
	HARNESS_INSTANCE_COUNT=$((HARNESS_INSTANCE_COUNT + 1))
	HARNESS_INSTANCE="${1:-instance$HARNESS_INSTANCE_COUNT}"
	: > "$HARNESS_STATE/declared/$HARNESS_INSTANCE"
}

harness_declare() {
	{
		printf '%s' "$1"
		shift
		for harness_arg in "$@"; do
			printf '\t%s' "$harness_arg"
		done
		printf '\n'
	} >> "$HARNESS_STATE/declared/$HARNESS_INSTANCE"
}

procd_set_param() {
	harness_record procd_set_param "$@"
	harness_declare "$@"
}

procd_append_param() {
	harness_record procd_append_param "$@"
	harness_declare "$@"
}

procd_close_instance() {
	harness_record procd_close_instance "$@"
	HARNESS_INSTANCE=
}

procd_open_trigger() {
	harness_record procd_open_trigger "$@"
}

procd_close_trigger() {
	harness_record procd_close_trigger "$@"
}

procd_add_reload_trigger() {
	harness_record procd_add_reload_trigger "$@"
}

procd_add_interface_trigger() {
	harness_record procd_add_interface_trigger "$@"
}

procd_close_service() {
	local method="${1:-set}" declared running name
	# procd.sh's _procd_close_service registers the triggers on every call.
	service_triggers
	harness_record procd_close_service "$@"
	for declared in "$HARNESS_STATE"/declared/*; do
		[ -e "$declared" ] || continue
		name="${declared##*/}"
		running="$HARNESS_STATE/running/$name"
		if [ ! -e "$running" ]; then
			harness_record procd-event start "$name"
		elif cmp -s "$declared" "$running"; then
			harness_record procd-event keep "$name"
		else
			harness_record procd-event restart "$name"
		fi
		cp "$declared" "$running"
	done
	[ "$method" = set ] || return 0
	for running in "$HARNESS_STATE"/running/*; do
		[ -e "$running" ] || continue
		name="${running##*/}"
		[ -e "$HARNESS_STATE/declared/$name" ] && continue
		harness_stop_instance "$name"
	done
}

procd_kill() {
	local instance="$2" running name
	harness_record procd_kill "$@"
	for running in "$HARNESS_STATE"/running/*; do
		[ -e "$running" ] || continue
		name="${running##*/}"
		[ -z "$instance" ] || [ "$instance" = "$name" ] || continue
		harness_stop_instance "$name"
	done
}

# Other services than the one under test run when a test creates
# $HARNESS_STATE/services/<name> (e.g. mwan3).
procd_running() {
	local instance="${2:-*}" running
	harness_record procd_running "$@"
	if [ "$1" != "$HARNESS_SERVICE" ]; then
		[ -e "$HARNESS_STATE/services/$1" ]
		return
	fi
	for running in "$HARNESS_STATE"/running/$instance; do
		[ -e "$running" ] && return 0
	done
	return 1
}

procd_send_signal() {
	local instance="${2:-*}" signal="${3:-}"
	harness_record procd_send_signal "$@"
	[ -e "$HARNESS_STATE/running/$instance" ] &&
		harness_record procd-event signal "$instance" "$signal"
	return 0
}
