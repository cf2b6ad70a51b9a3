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
# The calibration pair (docs/calibration.md): a defense that deserves PASS, one that
# deserves FAIL, audited against the same undefended reference.
declare -A verdicts
for model in filtered unlearned; do
  $certify audit "builtin:tiny-chat-$model" --reference builtin:tiny-chat-unfiltered \
    --policy calibration --key "$keys/certify.key" --out "runs/calibration-$model" "$@"
  code=$?
  if (( code > 1 )); then
    echo "certify demo: the calibration audit of tiny-chat-$model did not complete (exit $code)" >&2
    exit $code
  fi
  $certify verify "runs/calibration-$model" --key "$keys/certify.pub" > /dev/null || exit $?
  verdicts[$model]=$code
done
echo
echo "certify demo: audit finished with exit code $rc (0 pass, 1 fail/inconclusive);"
echo "              evidence, report.pdf and the signed attestation are in runs/demo"
echo "calibration:  tiny-chat-filtered exit ${verdicts[filtered]} (expected 0: PASS),"\
     "tiny-chat-unlearned exit ${verdicts[unlearned]} (expected 1: FAIL);"
echo "              runs/calibration-filtered, runs/calibration-unlearned"
if [[ ${verdicts[filtered]} != 0 || ${verdicts[unlearned]} != 1 ]]; then
  echo "certify demo: the calibration pair did not get its known verdicts" >&2
  exit 1
fi
