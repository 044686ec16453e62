#!/usr/bin/env bash
# Drives the real proxy-server (in front of the real ollama-sim) with the official OpenAI
# Python SDK, unchanged. Installs the SDK into .venv-sdk from PyPI on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/stack.sh
if [ ! -x .venv-sdk/bin/python ]; then
  python3 -m venv .venv-sdk
  .venv-sdk/bin/pip install -q openai
fi
start_stack sdk-test-admin-key
PROXY_URL=$PROXY_URL SIM_URL=$SIM_URL ADMIN_KEY=sdk-test-admin-key \
  .venv-sdk/bin/python tests/sdk/openai_python.py || { cat "$STACK_DIR/proxy.log"; exit 1; }
