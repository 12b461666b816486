#!/usr/bin/env bash
# Vault benchmarks: demo vault build rate, random-order import rate (into
# an empty vault, IMPORT_RUNS times; then as many tokens again, interleaved,
# into the filled vault), and lookup / PAN decrypt latency at COUNT tokens
# (random tokens, warm map).
#   bench/vault/run.sh [BUILD_DIR] [COUNT]      (defaults: build, 1000000)
#   IMPORT_RUNS=N (default 3), SORT_MEM_MB=N (tokvault import --sort-mem-mb)
# Needs about 330 bytes of disk per token for the demo vault, 700 for the
# import vault (two imports), 75 per token for each of the two CSVs, and
# about 360 bytes of memory per token imported. Prints key=value lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
count=${2:-1000000}
runs=${IMPORT_RUNS:-3}
tokvault=$build/tools/tokvault/tokvault
bench=$build/bench/vault/bench_vault
work=$(mktemp -d /tmp/tsw-vault-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
sort_mem=()
if [ -n "${SORT_MEM_MB:-}" ]; then sort_mem=(--sort-mem-mb "$SORT_MEM_MB"); fi

load() { cut -d' ' -f1 /proc/loadavg; }
echo "# count=$count host=$(nproc)cpu load=$(load)"
"$tokvault" --vault "$work/demo" --key-file "$work/demo.keys" demo --count "$count" \
	--out "$work/tokens.csv"
"$bench" make-csv --count "$count" --out "$work/import.csv"
"$bench" make-csv --count "$count" --skip "$count" --out "$work/import2.csv"
for i in $(seq "$runs"); do
	rm -rf "$work/imp" "$work/imp.keys"
	"$tokvault" --vault "$work/imp" --key-file "$work/imp.keys" init --token-bin 489537 \
		>/dev/null
	printf 'import_empty load=%s ' "$(load)"
	"$tokvault" --vault "$work/imp" --key-file "$work/imp.keys" import "${sort_mem[@]}" \
		"$work/import.csv"
done
printf 'import_into_filled load=%s ' "$(load)"
"$tokvault" --vault "$work/imp" --key-file "$work/imp.keys" import "${sort_mem[@]}" \
	"$work/import2.csv"
echo "import_vault_bytes=$(du -sb "$work/imp" | cut -f1)"
rm -rf "$work/imp" "$work/imp.keys" "$work/import.csv" "$work/import2.csv"
for i in 1 2 3; do
	"$bench" lookup --vault "$work/demo" --key-file "$work/demo.keys" --tokens "$work/tokens.csv"
done
