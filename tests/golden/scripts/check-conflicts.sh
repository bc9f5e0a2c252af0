#!/bin/sh
# Fails when a `copier update` left conflicts behind: unmerged paths, conflict markers, or
# .rej files. Copier exits 0 even then, so run this (make check-conflicts) after every update;
# CI runs it on every push.
set -u
cd "$(dirname "$0")/.." || exit 2
status=0

if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  unmerged=$(git ls-files -u | cut -f2 | sort -u)
  if [ -n "$unmerged" ]; then
    echo "Unmerged paths (resolve, then git add):"
    echo "$unmerged" | sed 's/^/  /'
    status=1
  fi
fi

rejects=$(find . -name '*.rej' -not -path './.git/*' | sort)
if [ -n "$rejects" ]; then
  echo "Rejected hunks (apply by hand, then delete the .rej file):"
  echo "$rejects" | sed 's/^/  /'
  status=1
fi

markers=$(grep -rlE '^(<<<<<<<|>>>>>>>)( |$)' --exclude-dir=.git --exclude-dir=bin --exclude-dir=tmp . 2>/dev/null | sort)
if [ -n "$markers" ]; then
  echo "Conflict markers (keep the right lines, delete the markers):"
  echo "$markers" | sed 's/^/  /'
  status=1
fi

[ "$status" -eq 0 ] && echo "No update conflicts."
exit "$status"
