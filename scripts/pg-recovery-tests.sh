#!/usr/bin/env bash
# PostgreSQL 15's own recovery tests (src/test/recovery) that archive or restore WAL, run against
# the installed PostgreSQL 15 with walmgr-ts's wal-archive and wal-restore in place of the `cp`
# commands PostgreSQL::Test::Cluster sets. Usage:
#
#   scripts/pg-recovery-tests.sh [TEST...]     (npm run test:pg-recovery [-- TEST...])
#
# TEST is a file name or its number (020, 020_archive_status.pl); default: every test below.
# The source comes from Debian's postgresql-15 source package of the installed version (apt-get
# source, a deb-src line added when there is none), cached in $WALMGR_CACHE_DIR (default
# /var/cache/walmgr-ts as root, else ~/.cache/walmgr-ts). As root the tests run as `postgres`
# (initdb refuses root). WALMGR_KEEP_TMP=1 keeps the work folder; it is kept on failure anyway.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PACKAGE=postgresql-15

# The tests of src/test/recovery/t in 15 that set has_archiving/has_restoring or an
# archive_command/restore_command of their own (the numbers of issue 22; 043 is the one of the
# two 043s that restores).
TESTS=(
  002_archiving.pl
  003_recovery_targets.pl
  004_timeline_switch.pl
  010_logical_decoding_timelines.pl
  020_archive_status.pl
  023_pitr_prepared_xact.pl
  024_archive_recovery.pl
  025_stuck_on_old_timeline.pl
  028_pitr_timelines.pl
  043_no_contrecord_switch.pl
  045_archive_restartpoint.pl
)

say() { printf '%s\n' "pg-recovery-tests: $*" >&2; }
die() {
  say "$*"
  exit 1
}

start=$(date +%s)
[ -x "$PG_BIN/initdb" ] || die "no PostgreSQL 15 at $PG_BIN (install $PG_PACKAGE, or set PG_BIN)"
[ -f "$REPO/dist/bin/wal-archive.js" ] || die "walmgr-ts is not built: run npm run build in $REPO"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# --- What the TAP framework and apt-get source need -------------------------------------------
need=()
perl -MIPC::Run -e 1 >/dev/null 2>&1 || need+=(libipc-run-perl)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v prove >/dev/null 2>&1 || need+=(perl)
if [ ${#need[@]} -gt 0 ]; then
  say "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- PostgreSQL's test sources, from Debian's source package of the installed version ---------
if [ "$(id -u)" = 0 ]; then
  CACHE=${WALMGR_CACHE_DIR:-/var/cache/walmgr-ts}
else
  CACHE=${WALMGR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/walmgr-ts}
fi
version=$(dpkg-query -W -f='${Version}' "$PG_PACKAGE" 2>/dev/null) || die "$PG_PACKAGE is not installed (dpkg)"
SRC="$CACHE/$PG_PACKAGE-$version" # holds src/test/perl and src/test/recovery only
if [ ! -d "$SRC" ]; then
  if [ -z "$(apt-cache showsrc "$PG_PACKAGE" 2>/dev/null)" ]; then
    # No deb-src line: add Debian's for this release, in a file of our own (then it is there).
    . /etc/os-release
    list=/etc/apt/sources.list.d/walmgr-ts-src.sources
    say "adding deb-src for ${VERSION_CODENAME} in $list"
    $SUDO tee "$list" >/dev/null <<EOF
# Debian source packages, for PostgreSQL's own tests (walmgr-ts scripts/pg-recovery-tests.sh)
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME} ${VERSION_CODENAME}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: ${VERSION_CODENAME}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    $SUDO apt-get update -qq
  fi
  mkdir -p "$CACHE"
  dl=$(mktemp -d "$CACHE/.download.XXXXXX")
  # The installed version's source; when the mirrors no longer hold it, their newest 15 (the
  # test framework changes little within a major version; the .dsc kept says which it is).
  if ! (cd "$dl" && apt-get source -qq --download-only "$PG_PACKAGE=$version" >/dev/null 2>&1); then
    say "no source of $PG_PACKAGE $version on the mirrors; taking the newest $PG_PACKAGE source"
    (cd "$dl" && apt-get source -qq --download-only "$PG_PACKAGE" >/dev/null 2>&1) ||
      die "apt-get source $PG_PACKAGE failed (in $dl)"
  fi
  # apt-get source checked the files against the signed Sources index; dpkg-source's own check
  # of the .dsc signature would need debian-keyring, so its warning about it is not shown.
  (cd "$dl" && dpkg-source -x ./*.dsc src >/dev/null 2>&1) || die "dpkg-source -x failed in $dl"
  mkdir "$dl/keep"
  mv "$dl/src/src/test/perl" "$dl/src/src/test/recovery" "$dl"/*.dsc "$dl/keep/"
  # Complete or not there: a half-made cache is never reused (-T: never into one made meanwhile).
  mv -T "$dl/keep" "$SRC" 2>/dev/null || [ -d "$SRC" ] || die "cannot create $SRC"
  rm -rf "$dl"
  find "$CACHE" -maxdepth 1 -name "$PG_PACKAGE-*" ! -name "${SRC##*/}" -exec rm -rf {} + # older versions
  say "cached PostgreSQL's test sources ($(basename "$SRC"/*.dsc)) in $SRC"
fi

# Which tests: the arguments (a number or a file name; the listed test first, as 043 names two),
# else all of TESTS.
run=()
for a in "${@:-${TESTS[@]}}"; do
  m=$(printf '%s\n' "${TESTS[@]}" | grep -E "^${a%.pl}(_|\.pl$)" | head -1 || true)
  [ -n "$m" ] || m=$(ls "$SRC/recovery/t" | grep -E "^${a%.pl}(_|\.pl$)" | head -1 || true)
  [ -n "$m" ] && [ -f "$SRC/recovery/t/$m" ] || die "no test $a in $SRC/recovery/t"
  run+=("t/$m")
done
# Tests that archive or restore and are not in TESTS: the list above needs a look.
for t in "$SRC"/recovery/t/*.pl; do
  b=$(basename "$t")
  if grep -qE 'has_archiving|has_restoring|enable_archiving|enable_restoring|archive_command|restore_command' "$t" &&
    [[ " ${TESTS[*]} " != *" $b "* ]]; then
    say "note: $b archives or restores too and is not run"
  fi
done

# --- A work folder the server user owns, with a patched copy ------------------------------------
WORK=$(mktemp -d /tmp/walmgr-pg-recovery.XXXXXX)
chmod 755 "$WORK"
cp -a "$SRC/perl" "$SRC/recovery" "$WORK/"

# walmgr-ts itself where the server user can execute it: this checkout when it can, else a copy
# (CI clones under /root), as test/helpers/env.ts packageRoot() does.
RUN=()
PKG=$REPO
if [ "$(id -u)" = 0 ]; then
  RUN=(runuser -u postgres --)
  if ! "${RUN[@]}" "$REPO/bin/wal-archive" --version >/dev/null 2>&1; then
    PKG=$WORK/walmgr-ts
    mkdir "$PKG"
    cp -a "$REPO/bin" "$REPO/dist" "$REPO/node_modules" "$REPO/package.json" "$PKG/"
    chmod -R a+rX "$PKG"
  fi
fi

# The patch: enable_archiving and enable_restoring call WalmgrTs (written below) for their
# command instead of building a `cp` one. Each substitution must apply exactly once.
CLUSTER=$WORK/perl/PostgreSQL/Test/Cluster.pm
cp "$CLUSTER" "$WORK/Cluster.pm.orig"
perl -0pi -e '
  $n = s{^use PostgreSQL::Test::Utils \(\);$}{use PostgreSQL::Test::Utils ();\nuse WalmgrTs;}m;
  $n += s{: qq\{cp "%p" "\$path/%f"\};}{: WalmgrTs::archive_command(\$path);};
  $n += s{: qq\{cp "\$path/%f" "%p"\};}{: WalmgrTs::restore_command(\$path);};
  die "Cluster.pm: $n of 3 substitutions applied\n" unless $n == 3;
' "$CLUSTER"
diff -u "$WORK/Cluster.pm.orig" "$CLUSTER" | sed "s|$WORK/||" || true

cat >"$WORK/perl/WalmgrTs.pm" <<'EOF'
# walmgr-ts's archive_command and restore_command for PostgreSQL::Test::Cluster: one config per
# archive folder, with completed_wals = that folder, so the tests' own look at the archive
# (pg_stat_file of ARCHIVE/%f, files copied in by hand) sees what wal-archive stored.
package WalmgrTs;
use strict;
use warnings;

my $root = $ENV{WALMGR_TS_ROOT} or die "WALMGR_TS_ROOT is not set\n";

# Writes ARCHIVE.walmgr-ROLE.ini once (atomically: running nodes may be reading it) and returns
# its path.
sub config
{
	my ($path, $role) = @_;
	my $ini = "$path.walmgr-$role.ini";
	return $ini if -f $ini;
	open my $fh, '>', "$ini.tmp" or die "cannot write $ini.tmp: $!";
	print $fh "[wal-$role]\ncompleted_wals = $path\n";
	close $fh or die "cannot write $ini.tmp: $!";
	rename "$ini.tmp", $ini or die "cannot rename $ini.tmp: $!";
	return $ini;
}

sub archive_command
{
	my ($path) = @_;
	return qq{$root/bin/wal-archive "} . config($path, 'master') . qq{" "%p" "%f"};
}

sub restore_command
{
	my ($path) = @_;
	return qq{$root/bin/wal-restore "} . config($path, 'slave') . qq{" "%f" "%p"};
}

1;
EOF
echo "+++ perl/WalmgrTs.pm (new): archive_command = '$PKG/bin/wal-archive \"ARCHIVE.walmgr-master.ini\" \"%p\" \"%f\"'," \
  "restore_command = '$PKG/bin/wal-restore \"ARCHIVE.walmgr-slave.ini\" \"%f\" \"%p\"'"

# The framework runs `pg_regress --config-auth` after initdb: a no-op but on Windows (SSPI).
PG_REGRESS="$(dirname "$PG_BIN")/lib/pgxs/src/test/regress/pg_regress"
[ -x "$PG_REGRESS" ] || PG_REGRESS=/bin/true

[ ${#RUN[@]} -eq 0 ] || chown -R postgres: "$WORK"
say "running ${#run[@]} test(s) in $WORK/recovery with $PG_BIN and $PKG/bin"
set +e
(
  cd "$WORK/recovery" &&
    "${RUN[@]}" env \
      PATH="$PG_BIN:$PATH" \
      TESTDIR="$WORK/recovery" \
      PG_REGRESS="$PG_REGRESS" \
      WALMGR_TS_ROOT="$PKG" \
      prove -j"${PG_RECOVERY_JOBS:-2}" --timer -I ../perl -I . "${run[@]}"
)
rc=$?
set -e

if [ $rc -ne 0 ]; then
  say "FAILED (prove exit $rc); logs kept in $WORK/recovery/tmp_check/log (regress_log_* per test)"
elif [ -z "${WALMGR_KEEP_TMP:-}" ]; then
  rm -rf "$WORK"
else
  say "kept $WORK"
fi
say "wall time $(($(date +%s) - start)) s"
exit $rc
