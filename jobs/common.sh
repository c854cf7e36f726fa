# Helpers shared by the job scripts; source it from bash, don't run it.

# Print an error as one line and exit with status 2.
die() {
    echo "${0##*/}: error: $*" >&2
    exit 2
}

# The repository root: the folder above jobs/.
hpcopt_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

# The Python for the ranks: $HPCOPT_PYTHON, else ROOT/.venv, else python3 on PATH.
find_python() {
    local root=$1
    if [[ -n ${HPCOPT_PYTHON:-} ]]; then
        echo "$HPCOPT_PYTHON"
    elif [[ -x $root/.venv/bin/python ]]; then
        echo "$root/.venv/bin/python"
    else
        command -v python3 || die "no python3 on PATH; set HPCOPT_PYTHON"
    fi
}

# The mpiexec next to PYTHON (an MPI wheel in a venv), else mpiexec on PATH.
find_mpiexec() {
    local bindir
    bindir=$(dirname "$1")
    if [[ -n ${HPCOPT_MPIEXEC:-} ]]; then
        echo "$HPCOPT_MPIEXEC"
    elif [[ -x $bindir/mpiexec ]]; then
        echo "$bindir/mpiexec"
    else
        command -v mpiexec || die "no mpiexec next to $1 or on PATH; set HPCOPT_MPIEXEC"
    fi
}

# The script for KERNEL: a path to a .py file, or a name (allreduce) in ROOT/kernels.
kernel_file() {
    local root=$1 name=${2%.py}
    if [[ $2 == *.py && -f $2 ]]; then
        realpath "$2"
        return
    fi
    name=${name##*/}
    [[ -f $root/kernels/$name.py ]] ||
        die "unknown kernel '$2' (kernels/ has: $(cd "$root/kernels" && ls -- *.py 2>/dev/null | tr '\n' ' '))"
    echo "$root/kernels/$name.py"
}

# Succeed when FLAG (as FLAG, FLAG=... or a short flag with its value attached) is in ARGS.
has_flag() {
    local flag=$1 arg
    shift
    for arg in "$@"; do
        [[ $arg == "$flag" || $arg == "$flag="* ]] && return 0
        [[ $flag != --* && $arg == "$flag"?* ]] && return 0
    done
    return 1
}

# Inside an allocation: run KERNEL with FLAGS on all tasks; the HDF5 log goes to
# OUTDIR/KERNEL-$SLURM_JOB_ID.h5 unless FLAGS give -o. LAUNCHER=srun (default) or mpirun;
# MPI_PLUGIN=pmi2 (default) or pmix picks srun's PMI. srun ends every rank as soon as one
# fails (--kill-on-bad-exit); a failure ends the job with one line naming the status.
slurm_launch() {
    local outdir=$1 kernel=$2 python out=() status
    shift 2
    python=$(find_python "$PWD")
    mkdir -p -- "$outdir"
    has_flag -o "$@" || has_flag --output "$@" || out=(-o "$outdir/$kernel-$SLURM_JOB_ID.h5")
    set -- "$python" -m mpi4py "kernels/$kernel.py" "$@" ${out[@]+"${out[@]}"}
    case ${LAUNCHER:-srun} in
    srun) set -- srun --mpi="${MPI_PLUGIN:-pmi2}" --kill-on-bad-exit=1 "$@" ;;
    mpirun) set -- mpirun -n "$SLURM_NTASKS" "$@" ;;
    *) die "LAUNCHER=$LAUNCHER: use srun or mpirun" ;;
    esac
    "$@" || {
        status=$?
        echo "hpcopt: error: kernels/$kernel.py failed with status $status (first error above)" >&2
        exit "$status"
    }
}

# Go to the repository (HPCOPT_ROOT, else the submit folder) and set up the run's environment.
slurm_enter() {
    cd "${HPCOPT_ROOT:-$SLURM_SUBMIT_DIR}"
    [[ -d kernels ]] || die "$PWD has no kernels/: submit from the repository or set HPCOPT_ROOT"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
}
