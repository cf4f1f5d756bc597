#!/usr/bin/env bash
# Installs what mxcont's tests need on a fresh Debian 12 machine (as root):
# swaks and Postfix (for smtp-source/smtp-sink and as a real customer
# primary), curl, Chromium (portal and webmail browser tests), Roundcube
# with lighttpd and php-cgi (the webmail test runs them from its own
# config directory, no web server is configured system-wide), python3
# (an independent IMAP client), and staticcheck. Safe to rerun.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v swaks >/dev/null || need+=(swaks)
command -v smtp-source >/dev/null || need+=(postfix)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
command -v python3 >/dev/null || need+=(python3)
if [ ! -d /var/lib/roundcube/public_html ] || ! command -v php-cgi >/dev/null || ! command -v lighttpd >/dev/null; then
  # No Apache and no php-fpm: the test runs lighttpd + php-cgi itself.
  need+=(roundcube-core roundcube-sqlite3 php-cgi lighttpd libapache2-mod-php8.2- php8.2-fpm-)
  debconf-set-selections <<'EOT'
roundcube-core roundcube/dbconfig-install boolean false
roundcube-core roundcube/reconfigure-webserver multiselect
roundcube-core roundcube/restart-webserver boolean false
EOT
fi
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
# Likewise a system lighttpd the package may have started on port 80.
if command -v lighttpd >/dev/null && pgrep -x lighttpd >/dev/null 2>&1; then
  service lighttpd stop >/dev/null 2>&1 || pkill -x lighttpd || true
fi

if ! command -v staticcheck >/dev/null && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  GOFLAGS=-buildvcs=false go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
