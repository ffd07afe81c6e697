#!/usr/bin/env bash
# Builds the Python package (python/) as a wheel into target/python-dist and installs it,
# with pytest for its suite. Run by scripts/test.sh before any test uses the package.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages "$@"
}
python3 -c 'import pytest' 2>/dev/null || pip_install 'pytest>=7'
rm -rf target/python-dist python/build python/src/*.egg-info
python3 -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir target/python-dist ./python
rm -rf python/build python/src/*.egg-info   # setuptools leaves these in the tree
wheel=$(ls target/python-dist/switchboard_rpc-*.whl)
pip_install --force-reinstall --no-deps "$wheel"
python3 -c 'import switchboard_rpc, sys; print("python package:", switchboard_rpc.__version__, "from", switchboard_rpc.__file__)'
