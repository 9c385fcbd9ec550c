#!/usr/bin/env bash
# Installs sparsetrain with its test needs (pinned: CPU torch 2.13.0) and runs the whole
# test suite: the C++ kernel tests (ctest) and the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet -c constraints.txt ".[test]"

if [ ! -f /usr/include/gtest/gtest.h ]; then
  # GoogleTest for the C++ tests, from Debian's packages.
  (apt-get update -qq && apt-get install -y -qq libgtest-dev) >/dev/null
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/cpp "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DSPARSETRAIN_BUILD_PYTHON=OFF -DSPARSETRAIN_BUILD_TESTS=ON >/dev/null
cmake --build build/cpp --parallel
ctest --test-dir build/cpp --output-on-failure

# `import sparsetrain` resolves to the installed package (the source lives under python/).
python3 -m pytest tests "$@"
