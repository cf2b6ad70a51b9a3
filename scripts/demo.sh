#!/usr/bin/env bash
# Install everything (idempotent), then audit the embedded demo model, sign the run
# directory and verify it offline. Runs on a laptop CPU in a few minutes, no network.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh || exit $?
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
certify=.venv/bin/certify
keys=.certify-keys
[[ -f $keys/certify.key ]] || $certify keygen --out "$keys" || exit $?
$certify audit builtin:tiny-chat-immunized --reference builtin:tiny-chat --policy ci-smoke \
  --key "$keys/certify.key" --out runs/demo "$@"
rc=$?
if (( rc > 1 )); then
  echo "certify demo: the audit did not complete (exit $rc)" >&2
  exit $rc
fi
echo
$certify verify runs/demo --key "$keys/certify.pub" || exit $?
echo
echo "certify demo: audit finished with exit code $rc (0 pass, 1 fail/inconclusive);"
echo "              evidence, report.pdf and the signed attestation are in runs/demo"
