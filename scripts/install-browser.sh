#!/usr/bin/env bash
# Debian's chromium (prints report.html to PDF, drives the browser test) and poppler-utils (pdftoppm,
# checks the PDF's pages). Installs only what is missing, and only where it can (root + apt-get).
set -u
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null && exit 0
    echo "warning: apt-get could not install ${missing[*]}; report.pdf and the browser tests need them" >&2
else
    echo "note: ${missing[*]} not installed; for report.pdf run: sudo apt-get install ${missing[*]}" >&2
fi
exit 0
