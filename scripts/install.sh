#!/usr/bin/env bash
# Install certify and everything it needs into .venv/ at the repository root.
# Idempotent: re-running does nothing when the environment is already up to date.
#   scripts/install.sh            runtime (attacks, evals, reports, signing)
#   scripts/install.sh --dev      plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras="run"
[[ "${1:-}" == "--dev" ]] && extras="run,dev"

# Debian packages: WeasyPrint's Pango/HarfBuzz, a font, and PDF tools used by tests.
apt_packages=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core fontconfig
              poppler-utils qpdf)
# Tests only: a headless browser for certify view's tests (tests/test_view.py).
[[ "${1:-}" == "--dev" ]] && apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "certify: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv

# Up to date when the same pyproject.toml and constraints installed these extras or more:
# scripts/demo.sh (runtime) after `scripts/install.sh --dev` must not install again.
stamp=.venv/.certify-install
digest=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f $stamp ]]; then
  read -r had had_digest < "$stamp" || true
  if [[ "${had_digest:-}" == "$digest" && ( "$had" == "$extras" || "$had" == "run,dev" ) ]]; then
    exit 0
  fi
fi
echo "certify: installing Python packages into .venv (torch 2.13.0 CPU first; a few minutes)"
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" -c constraints.txt torch==2.13.0
"${pip[@]}" -c constraints.txt -e ".[$extras]"
echo "$extras $digest" > $stamp
