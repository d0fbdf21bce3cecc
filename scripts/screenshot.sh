#!/usr/bin/env bash
# Screenshots a local HTML page (a `huarizo leaderboard --html` or `lineage --html` page)
# with Debian's headless Chromium, offline:
#   scripts/screenshot.sh PAGE.html OUT.png [WIDTHxHEIGHT]   (default 1280x1600)
# The shot is the top WIDTH×HEIGHT of the page; pick a HEIGHT that fits it.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 PAGE.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
page=$(realpath -e "$1")
out=$(realpath -m "$2")
size="${3:-1280x1600}"
if ! [[ "$size" =~ ^([0-9]+)x([0-9]+)$ ]]; then
  echo "$0: size must be WIDTHxHEIGHT, got $size" >&2
  exit 2
fi
width=${BASH_REMATCH[1]} height=${BASH_REMATCH[2]}
# The path as a file URL (the characters a path may hold that a URL reads otherwise).
url="file://$(printf '%s' "$page" | sed -e 's/%/%25/g' -e 's/ /%20/g' -e 's/#/%23/g' -e 's/?/%3F/g')"
chromium=/usr/bin/chromium
if [ ! -x "$chromium" ]; then
  echo "$0: $chromium not found (apt-get install chromium)" >&2
  exit 1
fi
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
rm -f "$out"
if ! "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="$width,$height" \
  --screenshot="$out" "$url" >"$log" 2>&1 || [ ! -s "$out" ]; then
  cat "$log" >&2
  echo "$0: no screenshot written" >&2
  exit 1
fi
echo "$out"
