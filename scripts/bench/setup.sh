#!/usr/bin/env bash
# Installs what the benchmark needs, each only when it is missing, from the package registries:
#   nginx   the pass-through anchor             apt (Debian's nginx-light)
#   oha     the load generator                  cargo install oha --locked (minutes, once)
#   LiteLLM the LiteLLM anchor, in a venv       pip: litellm[proxy] into $LITELLM_VENV
# Root is needed for apt. Safe to run again: what is there is left alone.
#
# usage: scripts/bench/setup.sh [--no-litellm]
#   env: LITELLM_VENV (where LiteLLM goes, target/bench/litellm-venv), LITELLM_VERSION (1.108.7, the version in earlier runs),
#        OHA_VERSION (empty: the newest that builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
WITH_LITELLM=1
[ "${1:-}" = --no-litellm ] && WITH_LITELLM=0
LITELLM_VENV=${LITELLM_VENV:-$(pwd)/target/bench/litellm-venv}
LITELLM_VERSION=${LITELLM_VERSION:-1.108.7}
OHA_VERSION=${OHA_VERSION:-}

if ! command -v nginx >/dev/null; then
  apt-get update -qq
  # Keep the distribution's nginx service from starting on install: the benchmark starts its
  # own instances with their own configuration, and port 80 may be taken.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light curl > /dev/null || rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { echo "setup: apt-get could not install nginx-light" >&2; exit "$rc"; }
fi

if ! command -v oha >/dev/null; then
  cargo install oha --locked ${OHA_VERSION:+--version "$OHA_VERSION"}
fi

if [ "$WITH_LITELLM" = 1 ] && [ ! -x "$LITELLM_VENV/bin/litellm" ]; then
  python3 -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/pip" install -q --upgrade pip
  "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
fi

echo "oha:     $(oha --version)"
echo "nginx:   $(nginx -v 2>&1)"
if [ -x "$LITELLM_VENV/bin/litellm" ]; then
  echo "litellm: $("$LITELLM_VENV/bin/pip" show litellm | awk '/^Version/{print $2}') in $LITELLM_VENV"
fi
