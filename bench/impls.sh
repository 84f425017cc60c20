# Helpers shared by bench/syscalls.sh and bench/tail.sh, which run every impl of the shared
# bench kit side by side. Sourced, not run. Needs SHARED_BENCH and OUR_BIN_DIR set.

# A free TCP port on loopback.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something answers /health on PORT (10 s at most).
wait_up() { # PORT
    local i
    for i in $(seq 100); do
        curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$1/health" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: nothing answers /health on port $1" >&2
    exit 1
}

# Defines start_a and start_b (and maybe impl_prepare) for IMPL from the kit's impls/; for
# `project=DIR`, our binaries from DIR (a build of another commit), for `project`, ours.
load_impl() { # IMPL or project=DIR
    unset -f start_a start_b impl_prepare
    case $1 in
        project=*) PROJECT_BIN_DIR=${1#project=} ;;
        project) PROJECT_BIN_DIR=$OUR_BIN_DIR ;;
    esac
    # shellcheck source=/dev/null
    source "$SHARED_BENCH/impls/${1%%=*}.sh"
}
