#!/bin/sh
# Build netpath_<version>_all.ipk and luci-app-netpath_<version>_all.ipk from this checkout,
# without the OpenWrt SDK:  sh scripts/build-packages.sh OUTDIR
#
# The Makefiles in openwrt/netpath and luci/ stay the one description of the packages:
# versions, Depends, conffiles and maintainer scripts are read from them, and the netpath
# package's files are installed by running the commands of its Package/netpath/install
# (luci-app-netpath's are luci.mk's: htdocs/ to /www, root/ to /). An .ipk is a gzip'd tar
# of debian-binary, data.tar.gz and control.tar.gz, which opkg installs on OpenWrt 24.10
# and earlier (OpenWrt 25.12 and later use apk: build there with the SDK, see docs/openwrt.md).
# The output is reproducible: file times are the last commit's, owners root.
set -eu

usage() {
	echo "usage: sh scripts/build-packages.sh OUTDIR" >&2
	exit 2
}
[ "$#" = 1 ] || usage

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$1"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT INT TERM

if EPOCH="$(git -C "$REPO" log -1 --format=%ct 2>/dev/null)" && [ -n "$EPOCH" ]; then :; else EPOCH=0; fi

# makefile_var FILE NAME: the value of `NAME:=value` (continuation lines joined, '+' and
# surplus blanks removed: DEPENDS:=+a +b -> "a b").
makefile_var() {
	awk -v name="$2" '
		function emit(text) { gsub(/\\/, " ", text); gsub(/\+/, "", text); gsub(/[ \t]+/, " ", text);
		                      sub(/^ /, "", text); sub(/ $/, "", text); print text; exit }
		collecting { value = value " " $0; if ($0 !~ /\\$/) emit(value); next }
		{ line = $0; sub(/^[ \t]+/, "", line) }
		index(line, name ":=") == 1 { value = substr(line, length(name) + 3);
		                               if (value ~ /\\$/) { collecting = 1; next } emit(value) }
	' "$1"
}

# makefile_define FILE NAME: the lines between `define NAME` and `endef`.
makefile_define() {
	awk -v name="$2" '$0 == "endef" && inside { exit } inside { print } $0 == "define " name { inside = 1 }' "$1"
}

# The package's own maintainer script, like OpenWrt's build: postinst runs default_postinst
# (uci-defaults, enable and start the init scripts) and then <pkg>.postinst-pkg; prerm runs
# default_prerm (stop and disable) and then <pkg>.prerm-pkg (lib/functions.sh does both).
write_maintainer_script() { # FILE default_postinst|default_prerm
	cat > "$1" <<EOF
#!/bin/sh
[ "\${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s \${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. \${IPKG_INSTROOT}/lib/functions.sh
$2 \$0 \$@
EOF
	chmod 0755 "$1"
}

# A make recipe line as shell: OpenWrt's install variables and the recipe's $(1).
recipe_to_sh() { # ROOT SOURCE_DIR
	awk -v root="$1" -v src="$2" '
		{ sub(/^\t/, "") }
		/\\$/ { sub(/\\$/, ""); pending = pending $0; next }
		{ line = pending $0; pending = ""
		  gsub(/\$\(1\)/, root, line); gsub(/\$\(NETPATH_SOURCE_DIR\)/, src, line)
		  gsub(/\$\(INSTALL_DIR\)/, "install -d -m0755", line)
		  gsub(/\$\(INSTALL_BIN\)/, "install -m0755", line)
		  gsub(/\$\(INSTALL_DATA\)/, "install -m0644", line)
		  gsub(/\$\(INSTALL_CONF\)/, "install -m0600", line)
		  gsub(/\$\(CP\)/, "cp -fpR", line); gsub(/\$\(FIND\)/, "find", line)
		  gsub(/\$\$/, "$", line)
		  print line }'
}

# Unescape a Makefile define body used as a shell script ($$ -> $).
define_to_sh() {
	sed 's/\$\$/$/g'
}

tar_gz() { # ARCHIVE DIR: the contents of DIR as ./path, root-owned, sorted, fixed times
	(cd "$2" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
		--format=gnu -cf - .) | gzip -9n > "$1"
}

# build_ipk NAME VERSION DEPENDS SECTION DESCRIPTION MAKEFILE ROOT
build_ipk() {
	name="$1" version="$2" depends="$3" section="$4" description="$5" makefile="$6" root="$7"
	control="$WORK/$name.control"
	mkdir -p "$control"
	size="$(du -sk --apparent-size "$root" | cut -f1)"
	{
		echo "Package: $name"
		echo "Version: $version"
		echo "Depends: $(echo "$depends" | sed 's/ /, /g')"
		echo "Source: $(basename "$(dirname "$makefile")")"
		echo "License: $(makefile_var "$makefile" PKG_LICENSE)"
		echo "Section: $section"
		echo "SourceDateEpoch: $EPOCH"
		echo "Architecture: all"
		echo "Installed-Size: $((size * 1024))"
		echo "Description: $description"
	} > "$control/control"
	makefile_define "$makefile" "Package/$name/conffiles" > "$control/conffiles"
	[ -s "$control/conffiles" ] || rm "$control/conffiles"
	write_maintainer_script "$control/postinst" default_postinst
	write_maintainer_script "$control/prerm" default_prerm
	for script in postinst prerm; do
		makefile_define "$makefile" "Package/$name/$script" | define_to_sh > "$control/$script-pkg"
		if [ -s "$control/$script-pkg" ]; then chmod 0755 "$control/$script-pkg"; else rm "$control/$script-pkg"; fi
	done
	# luci.mk's postinst: LuCI rebuilds its caches, rpcd reloads plugins and ACLs.
	[ "$name" = luci-app-netpath ] && cat > "$control/postinst-pkg" <<'EOF' && chmod 0755 "$control/postinst-pkg"
[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
EOF
	pkg="$WORK/$name.pkg"
	mkdir -p "$pkg"
	echo "2.0" > "$pkg/debian-binary"
	tar_gz "$pkg/data.tar.gz" "$root"
	tar_gz "$pkg/control.tar.gz" "$control"
	(cd "$pkg" && tar --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" --format=gnu \
		-cf - ./debian-binary ./data.tar.gz ./control.tar.gz) | gzip -9n > "$OUT/${name}_${version}_all.ipk"
	echo "$OUT/${name}_${version}_all.ipk"
}

# --- netpath --------------------------------------------------------------------------------
MK="$REPO/openwrt/netpath/Makefile"
VERSION="$(makefile_var "$MK" PKG_VERSION)-$(makefile_var "$MK" PKG_RELEASE)"
ROOT="$WORK/netpath.root"
mkdir -p "$ROOT"
makefile_define "$MK" Package/netpath/install | recipe_to_sh "$ROOT" "$REPO" > "$WORK/install.sh"
(cd "$(dirname "$MK")" && umask 022 && sh -e "$WORK/install.sh")
chmod -R go-w "$ROOT"
build_ipk netpath "$VERSION" "$(makefile_var "$MK" DEPENDS)" net \
	"$(makefile_var "$MK" TITLE)" "$MK" "$ROOT"

# --- luci-app-netpath -----------------------------------------------------------------------
MK="$REPO/luci/Makefile"
VERSION="$(makefile_var "$MK" PKG_VERSION)-$(makefile_var "$MK" PKG_RELEASE)"
ROOT="$WORK/luci.root"
mkdir -p "$ROOT/www"
cp -pR "$REPO/luci/htdocs/." "$ROOT/www/"
cp -pR "$REPO/luci/root/." "$ROOT/"
find "$ROOT" -type d -exec chmod 0755 {} +
find "$ROOT" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$ROOT" -type f -perm -u+x -exec chmod 0755 {} +
build_ipk luci-app-netpath "$VERSION" "$(makefile_var "$MK" LUCI_DEPENDS)" luci \
	"$(makefile_var "$MK" LUCI_TITLE)" "$MK" "$ROOT"
