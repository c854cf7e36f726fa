#!/bin/bash
# Run a kernel on this machine with the venv's MPI: jobs/workstation.sh [-n RANKS] KERNEL [flags]
# The kernel writes its HDF5 log under results/ unless its flags say otherwise.
# MPIEXEC_TIMEOUT (default 3600 s) ends a job that hangs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    die "usage: ${0##*/} [-n RANKS] KERNEL [kernel flags]"
}

main() {
    local ranks=2
    if [[ ${1:-} == -n ]]; then
        [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "-n needs a positive rank count, got '${2:-}'"
        ranks=$2
        shift 2
    fi
    [[ $# -ge 1 && $1 != -* ]] || usage
    local root python kernel
    root=$(hpcopt_root)
    python=$(find_python "$root")
    kernel=$(kernel_file "$root" "$1")
    shift
    cd "$root"
    export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
    export MPIEXEC_TIMEOUT=${MPIEXEC_TIMEOUT:-3600}
    exec "$(find_mpiexec "$python")" -n "$ranks" "$python" -m mpi4py "$kernel" "$@"
}

main "$@"
