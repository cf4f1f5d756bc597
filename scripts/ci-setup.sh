#!/usr/bin/env bash
# Installs what mxcont's tests need on a fresh Debian 12 machine (as root):
# swaks and Postfix (for smtp-source/smtp-sink and as a real customer
# primary), curl, and staticcheck. Safe to rerun.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v swaks >/dev/null || need+=(swaks)
command -v smtp-source >/dev/null || need+=(postfix)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  if [[ " ${need[*]} " == *" postfix "* ]]; then
    debconf-set-selections <<'EOT'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string mxcont-ci.localdomain
EOT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# The Postfix package may start a system instance; tests run their own.
if command -v postfix >/dev/null && postfix status >/dev/null 2>&1; then
  postfix stop >/dev/null 2>&1 || true
fi

if ! command -v staticcheck >/dev/null && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
