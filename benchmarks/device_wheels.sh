#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the wheels the GPU benchmarks need that the workplace's
# device image (Python 3.12, JAX, flax, optax, orbax, chex; no TensorFlow) lacks:
# ml-collections for every config, MuJoCo + MJX + gymnasium for benchmarks/agent_suite.py.
# First, on this CPU, the same commands at their smoke size (seconds each past the compilation;
# tests/test_benchmarks_smoke.py runs them): a broken import or key shows here, not in the GPU call:
#   python -m benchmarks.run --smoke --only accelerator,agent_suite
# Then, on the device (carry .whl):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
#   python3 -m benchmarks.agent_suite --out "$OUT/agent_suite.json"      # <= 10 minutes
#   python3 -m benchmarks.run --only accelerator --out "$OUT/accelerator.json"
set -euo pipefail
cd "$(dirname "$0")/.."
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux1_x86_64)
for package in ml-collections==1.1.0 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 \
    mujoco-mjx==3.17.0 gymnasium==1.2.2 farama-notifications==0.0.4 trimesh==5.2.0 \
    glfw==2.10.0 pyopengl==3.1.10 websockets==15.0.1; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d .whl "$package"
done
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
du -sh .whl
