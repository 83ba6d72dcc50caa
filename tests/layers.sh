#!/bin/sh
# The layer rule of src/ (src/README), checked on what was built:
#
#   main.c > proxy layer (proxy, session, route, health, balance, admin)
#          > config, yamltree, confsys, acl, proxyproto, tls > net/ > loop/
#   log.c, path.c, hset.c and errf.c: usable by every layer; proc/: by
#   main.c and relay.c alone; os/ (what the base files need from the OS):
#   below them all, usable by every layer and by proc/, using no other
#   module; relay.c (sluice relay, a mode beside the daemon): between
#   main.c and the proxy layer, used by main.c only
#
# Each module may use its own layer and the ones below.  Two views of
# "use": the symbols each object file references (nm, so calls and data,
# whatever the headers say), and the #include "..." lines of the sources
# (types too, which leave no symbol).  Either fails on a use that goes
# up, or sideways into proc/, naming both files; and on a cycle between
# modules of one layer.  A module of none of the layers fails too: a new
# file gets its place here (and in src/README) when it is added.
#
# make check sets SL_OBJECTS (libsluice.a's objects and main's) and NM.
if [ -z "$SL_OBJECTS" ]; then
	echo "layers: SL_OBJECTS not set (run by make check)"
	exit 99
fi
NM=${NM:-nm}
if ! command -v "$NM" >/dev/null 2>&1; then
	echo "layers: no nm ($NM): skipped"
	exit 77
fi
src=$(cd "$(dirname "$0")/../src" && pwd) || exit 99

tmp=${TMPDIR:-/tmp}/sl-layers.$$
trap 'rm -f "$tmp"' EXIT
: >"$tmp"
for o in $SL_OBJECTS; do
	if [ ! -f "$o" ]; then
		echo "layers: $o is missing (build first)"
		exit 99
	fi
	# "name type ..." per external symbol; U (w, v: weak) references one.
	"$NM" -P -g "$o" | sed "s|^|nm $o |" >>"$tmp" || exit 99
done
(cd "$src" && find . -name '*.[ch]' | sed 's|^\./||' | sort) |
while read -r f; do
	sed -n 's|^[ 	]*#[ 	]*include[ 	]*"\([^"]*\)".*|\1|p' \
		"$src/$f" | while read -r h; do
		# As the compiler looks: the including file's directory, then
		# src/ (-I).  Others (sl_autoconf.h) are not sluice modules.
		d=$(dirname "$f")
		if [ -f "$src/$d/$h" ]; then
			t=$d/$h
		elif [ -f "$src/$h" ]; then
			t=$h
		else
			continue
		fi
		echo "inc src/$f src/${t#./}"
	done
done >>"$tmp"

awk '
# Module of a file: its directory below src/ for loop, net, proc and os
# (one module each, whatever their files do among themselves), else its
# name without the extension (route.c and route.h are "route").
function module(path,    m) {
	m = path
	sub(/^src\//, "", m)
	if (m ~ /^(loop|net|proc|os)\//) {
		sub(/\/.*/, "", m)
		return m
	}
	if (m ~ /\//)
		return "?" m
	sub(/\.[^.]*$/, "", m)
	return m
}
function layer(m) {
	if (m == "log" || m == "path" || m == "hset" || m == "errf")
		return "base"
	if (m == "os" || m == "loop" || m == "net" || m == "proc" ||
	    m == "main" || m == "relay")
		return m
	if (m == "config" || m == "yamltree" || m == "acl" ||
	    m == "proxyproto" || m == "tls" || m == "confsys" ||
	    m == "confsys_posix" || m == "confsys_win")
		return "config"
	if (m == "proxy" || m == "session" || m == "route" ||
	    m == "health" || m == "balance" || m == "admin")
		return "proxy"
	return ""
}
function allowed(a, b) {
	if (a == b)
		return 1
	if (b == "proc")
		return a == "main" || a == "relay"
	if (a == "proc")
		return b == "os" || b == "base" || b == "loop"
	return rank[b] <= rank[a]
}
function name(l) {
	return lname[l]
}
# One use by file f (module a) of file g (module b): symbol sym, or its
# header when sym is empty.
function use(f, g, sym,    a, b, la, lb, how) {
	a = module(f)
	b = module(g)
	if (a == b)
		return
	la = layer(a)
	lb = layer(b)
	if (la == "" || lb == "") {
		if (!(unknown[la == "" ? f : g]++))
			printf "layers: %s is in no layer: give it one in tests/layers.sh and src/README\n", \
				la == "" ? f : g
		bad = 1
		return
	}
	how = sym == "" ? f " includes " g : f " uses " sym " from " g
	if (!allowed(la, lb)) {
		printf "layers: %s: %s may not use %s\n", how, name(la), \
			name(lb)
		bad = 1
		return
	}
	if (la != lb)
		return
	if (!((a, b) in edge)) {
		out[a] = out[a] " " b
		nodes[a] = 1
		nodes[b] = 1
	}
	# A symbol says more than an include line.
	if (!((a, b) in edge) || (sym != "" && !((a, b) in bysym))) {
		edge[a, b] = how
		if (sym != "")
			bysym[a, b] = 1
	}
}
# Depth-first search among the modules of one layer: every edge back to
# a module still on the stack closes a cycle, printed with the uses that
# make it.
function visit(m,    i, n, next_, list, k, first) {
	color[m] = 1
	stack[++depth] = m
	n = split(out[m], list, " ")
	for (i = 1; i <= n; i++) {
		next_ = list[i]
		if (color[next_] == 0) {
			visit(next_)
			continue
		}
		if (color[next_] != 1)
			continue
		for (first = 1; stack[first] != next_; first++)
			;
		printf "layers: cycle:"
		for (k = first; k <= depth; k++)
			printf " %s ->", stack[k]
		printf " %s\n", next_
		for (k = first; k < depth; k++)
			printf "  %s\n", edge[stack[k], stack[k + 1]]
		printf "  %s\n", edge[stack[depth], next_]
		bad = 1
	}
	color[m] = 2
	depth--
}
BEGIN {
	rank["os"] = -1; lname["os"] = "os/"
	rank["base"] = 0; lname["base"] = "log.c, path.c, hset.c, errf.c"
	rank["loop"] = 1; lname["loop"] = "loop/"
	rank["net"] = 2; lname["net"] = "net/"
	rank["config"] = 3; lname["config"] = \
		"config.c, yamltree.c, confsys_*.c, acl.c, proxyproto.c, tls.c"
	rank["proxy"] = 4; lname["proxy"] = "the proxy layer"
	rank["relay"] = 5; lname["relay"] = "relay.c"
	rank["main"] = 6; lname["main"] = "main.c"
	lname["proc"] = "proc/"
}
$1 == "nm" && ($4 == "U" || $4 == "w" || $4 == "v") {
	ref[++nref] = $2 " " $3
	next
}
$1 == "nm" && $4 ~ /^[A-Z]$/ {
	def[$3] = $2
	next
}
$1 == "inc" {
	use($2, $3, "")
	next
}
END {
	for (i = 1; i <= nref; i++) {
		split(ref[i], r, " ")
		if (r[2] in def)
			use(r[1], def[r[2]], r[2])
	}
	for (m in nodes)
		if (color[m] == 0)
			visit(m)
	if (bad)
		exit 1
	print "layers: every use goes down; no cycle"
}
' "$tmp"
