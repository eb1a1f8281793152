#!/usr/bin/env bash
# Builds bioseg's Python package (crates/bioseg-python) into a venv and runs its pytest suite.
#
#   tools/python/test.sh              # what .ci/run does: the `dev` profile (the test build's,
#                                     # so cargo test's compiled dependencies are reused)
#   tools/python/test.sh --release    # the optimised build `pip install` makes
#   tools/python/test.sh --napari     # also the napari plugin test (tools/python/.venv-napari:
#                                     # napari + PyQt5, hundreds of MB; not in CI)
#
# The venv is made from the pinned tools/python/requirements*.txt when missing. The tests that
# compare with the CLI use target/{release,debug}/bioseg (BIOSEG_BIN overrides).
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=dev
venv=tools/python/.venv
requirements=tools/python/requirements.txt
for arg in "$@"; do
    case "$arg" in
        --release) profile=release ;;
        --napari) venv=tools/python/.venv-napari; requirements=tools/python/requirements-napari.txt ;;
        *) echo "usage: $0 [--release] [--napari]" >&2; exit 2 ;;
    esac
done
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$requirements"
fi
wheels=target/wheels/$profile
rm -rf "$wheels"
"$venv/bin/maturin" build --locked --profile "$profile" -m crates/bioseg-python/Cargo.toml -i "$venv/bin/python" -o "$wheels"
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheels"/bioseg-*.whl
# Offscreen Qt for the napari test (no display here).
QT_QPA_PLATFORM=offscreen "$venv/bin/python" -m pytest crates/bioseg-python/tests -q -p no:cacheprovider
