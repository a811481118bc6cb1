# shellcheck shell=ash
# The parts of OpenWrt's /lib/functions.sh that NetPath's scripts use, for tests.
# config_load evaluates the `uci -n export`-style statements that uci_dump.py prints,
# as OpenWrt's does with the output of uci itself. Calls are recorded in $HARNESS_LOG.

harness_record() {
	{
		printf '%s' "$1"
		shift
		for harness_arg in "$@"; do
			printf '\t%s' "$harness_arg"
		done
		printf '\n'
	} >> "$HARNESS_LOG"
}

append() {
	# shellcheck disable=SC2034 # sep is used inside eval
	local var="$1" value="$2" sep="${3:- }"
	eval "$var=\${$var:+\${$var}\${sep}}\$value"
}

list_contains() {
	local var="$1" str="$2" val
	eval "val=\" \${$var} \""
	[ "${val%% "$str" *}" != "$val" ]
}

config() {
	local cfgtype="$1" name="$2"
	CONFIG_SECTION="$name"
	append CONFIG_SECTIONS "$name"
	eval "CONFIG_${name}_TYPE=\$cfgtype"
}

option() {
	eval "CONFIG_${CONFIG_SECTION}_$1=\$2"
}

list() {
	local name="$1" value="$2"
	append "CONFIG_${CONFIG_SECTION}_${name}" "$value"
}

config_load() {
	local data
	harness_record config_load "$@"
	# Forget the previous package, as uci_load does.
	for harness_section in $CONFIG_SECTIONS; do
		for harness_var in $(set | sed -n "s/^\(CONFIG_${harness_section}_[A-Za-z0-9_]*\)=.*/\1/p"); do
			unset "$harness_var"
		done
	done
	CONFIG_SECTIONS=
	CONFIG_SECTION=
	data="$("$HARNESS_PYTHON" "$HARNESS_DIR/uci_dump.py" "${UCI_CONFIG_DIR:-/etc/config}/$1")" || return 1
	eval "$data"
}

config_get() {
	case "$#" in
		2) eval "printf '%s\n' \"\${CONFIG_$1_$2}\"" ;;
		*) eval "$1=\${CONFIG_$2_$3:-\$4}" ;;
	esac
}

config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
		1|on|true|yes|enabled) _tmp=1 ;;
		0|off|false|no|disabled) _tmp=0 ;;
		*) _tmp="$4" ;;
	esac
	eval "$1=\$_tmp"
}

config_foreach() {
	local function="$1" type="$2" section cfgtype
	shift 2
	for section in $CONFIG_SECTIONS; do
		eval "cfgtype=\${CONFIG_${section}_TYPE}"
		[ -z "$type" ] || [ "$cfgtype" = "$type" ] || continue
		"$function" "$section" "$@"
	done
}
