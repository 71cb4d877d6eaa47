#!/usr/bin/env bash
# Installs Tryton 6.0 from Debian packages (when missing) and builds the o2c fixture database once
# into a cache outside git, keyed by a hash of the fixture sources, the Tryton version and the
# year (the fixture's fiscal year). Prints the snapshot directory (o2c.sqlite + fixture.json) as the
# last line of stdout. A second run with the cache present only checks and prints.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DB=o2c
ADMIN_PASSWORD="${O2C_TRYTON_ADMIN_PASSWORD:-admin}"
MODULES=(sale sale_credit_limit account_invoice_stock sale_stock_quantity account_payment)
PACKAGES=(tryton-server tryton-proteus tryton-modules-sale tryton-modules-sale-credit-limit
  tryton-modules-account-invoice-stock tryton-modules-sale-stock-quantity tryton-modules-account-payment)
PY=/usr/bin/python3

die() { echo "tryton setup: $*" >&2; exit 1; }
log() { echo "tryton setup: $*" >&2; }

# 1. Packages: apt-get update + install only when something is missing.
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get (Debian 12 is expected)"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "missing ${missing[*]}: run as root or install sudo"
    SUDO=(sudo)
  fi
  log "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install ${missing[*]} failed"
fi
for bin in trytond trytond-admin; do command -v "$bin" >/dev/null || die "$bin not on PATH after install"; done
[[ -x $PY ]] || die "$PY not found"
"$PY" -c 'import proteus, trytond' 2>/dev/null || die "$PY cannot import proteus/trytond"

# 2. Cache key: fixture sources + Tryton version + year.
version="$(dpkg-query -W -f='${Version}' tryton-server)"
key="$( { cat "$HERE/setup.sh" "$HERE/fixture.py"; echo "$version"; date +%Y; } | sha256sum | cut -c1-16)"
CACHE_ROOT="${O2C_TRYTON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/o2c/tryton}"
OUT="$CACHE_ROOT/$key"
if [[ -f "$OUT/o2c.sqlite" && -f "$OUT/fixture.json" && -f "$OUT/.complete" ]]; then
  echo "$OUT"
  exit 0
fi

# 3. Build into a temporary directory next to the cache, then rename (atomic, no half snapshot).
mkdir -p "$CACHE_ROOT"
work="$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building fixture database in $work (about a minute)"
cat > "$work/trytond.conf" <<CONF
[database]
uri = sqlite://
path = $work
[web]
listen = 127.0.0.1:0
CONF
: > "$work/$DB.sqlite"
printf '%s\n' "$ADMIN_PASSWORD" > "$work/admin.pass"
export TRYTONPASSFILE="$work/admin.pass"
start=$SECONDS
trytond-admin -c "$work/trytond.conf" -d "$DB" --all --email admin@example.com > "$work/init.log" 2>&1 ||
  { tail -n 30 "$work/init.log" >&2; die "trytond-admin init failed"; }
log "database initialised ($((SECONDS - start)) s)"
trytond-admin -c "$work/trytond.conf" -d "$DB" -u "${MODULES[@]}" --activate-dependencies > "$work/activate.log" 2>&1 ||
  { tail -n 30 "$work/activate.log" >&2; die "module activation failed"; }
log "modules activated ($((SECONDS - start)) s)"
O2C_TRYTON_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$PY" "$HERE/fixture.py" "$work/trytond.conf" "$DB" "$work/fixture.json" \
  > "$work/fixture.log" 2>&1 || { tail -n 40 "$work/fixture.log" >&2; die "fixture.py failed"; }
log "fixture data created ($((SECONDS - start)) s)"

mkdir -p "$work/out"
cp "$work/$DB.sqlite" "$work/fixture.json" "$work/out/"
touch "$work/out/.complete"
rm -rf "$OUT"
mv "$work/out" "$OUT"
echo "$OUT"
