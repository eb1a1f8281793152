#!/usr/bin/env bash
# Validates BioImage Model Zoo packages with the zoo's reference implementation: the format with
# bioimageio.spec, and bioimageio.core's test_model (ONNX Runtime reproduces the package's test
# output from its test input, and runs the model at other batch and tile sizes the description
# allows). Exits non-zero when a package fails.
#
#   python3 -m venv tools/bioimageio/.venv
#   tools/bioimageio/.venv/bin/pip install -r tools/bioimageio/requirements.txt
#   tools/bioimageio/check.sh PACKAGE.zip [MORE.zip ...]
#
# The summary of each package goes to PACKAGE.zip.test.md beside it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=$ROOT/tools/bioimageio/.venv/bin/python
[[ -x $PY ]] || { echo "check.sh: $PY is missing (see the commands at the top of this file)" >&2; exit 2; }
(( $# > 0 )) || { echo "usage: tools/bioimageio/check.sh PACKAGE.zip [MORE.zip ...]" >&2; exit 2; }
status=0
for package in "$@"; do
    "$PY" - "$package" <<'PYTHON' || status=1
import sys
from pathlib import Path

from bioimageio.core import test_model

package = Path(sys.argv[1])
summary = test_model(package)
report = package.with_name(package.name + ".test.md")
report.write_text(summary.format())
failed = [d.name for d in summary.details if d.status == "failed"]
print(f"{package}: {summary.status} ({len(summary.details)} checks{', failed: ' + '; '.join(failed) if failed else ''}); summary in {report}")
sys.exit(0 if summary.status == "passed" else 1)
PYTHON
done
exit $status
