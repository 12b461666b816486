#!/usr/bin/env bash
# Vault benchmarks: demo vault build rate, random-order import rate, and
# lookup / PAN decrypt latency at COUNT tokens (random tokens, warm map).
#   bench/vault/run.sh [BUILD_DIR] [COUNT]      (defaults: build, 1000000)
# Needs about 450 bytes of disk per token (x2: demo vault + import vault)
# plus 75 bytes per token for the CSVs. Prints key=value lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
count=${2:-1000000}
tokvault=$build/tools/tokvault/tokvault
bench=$build/bench/vault/bench_vault
work=$(mktemp -d /tmp/tsw-vault-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "# count=$count host=$(nproc)cpu load=$(cut -d' ' -f1 /proc/loadavg)"
"$tokvault" --vault "$work/demo" --key-file "$work/demo.keys" demo --count "$count" \
	--out "$work/tokens.csv"
"$bench" make-csv --count "$count" --out "$work/import.csv"
"$tokvault" --vault "$work/imp" --key-file "$work/imp.keys" init --token-bin 489537 >/dev/null
"$tokvault" --vault "$work/imp" --key-file "$work/imp.keys" import "$work/import.csv"
rm -rf "$work/imp" "$work/import.csv"
for i in 1 2 3; do
	"$bench" lookup --vault "$work/demo" --key-file "$work/demo.keys" --tokens "$work/tokens.csv"
done
