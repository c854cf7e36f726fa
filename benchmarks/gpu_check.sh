#!/bin/bash
# Every GPU check in one go, on a fresh GPU machine (Python 3.12, cupy-cuda13x), < 5 min:
# builds a venv that sees the system CuPy, brings an MPI (the MPICH wheel) when none
# works, then runs the GPU tests (collectives on CuPy buffers with 2 ranks sharing the
# GPU, staged and CUDA-aware where the MPI is; encoders; kernels bit for bit against the
# NumPy reference; fused decode-and-sum) and benchmarks/gpu_encoders.py.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]
#
# Offline machines: put wheels in .whl/ first (on a machine with the index:
#   pip download -d .whl --python-version 3.12 --only-binary=:all: \
#       mpi4py mpich h5py pytest pytest-mpi pytest-timeout hypothesis setuptools
# ); pip then installs from there. Output goes to OUTDIR (default $OUT or gpu-check/).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUTDIR=${1:-${OUT:-gpu-check}}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.txt
exec > >(tee "$LOG") 2>&1
START=$SECONDS
step() { echo "## $* ($((SECONDS - START)) s)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 --version

step "venv (sees the system packages: cupy)"
VENV=${GPU_VENV:-/tmp/hpcopt-gpu-venv}
python3 -m venv --system-site-packages "$VENV"
. "$VENV/bin/activate"
PIP=(pip install -q --disable-pip-version-check)
[[ -d .whl ]] && PIP+=(--find-links .whl)
python -c "import cupy; print('cupy', cupy.__version__, cupy.cuda.runtime.getDeviceCount(), 'GPU(s)')"

step "MPI"
if python -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])" 2>/dev/null; then
    echo "an MPI works already"
elif command -v mpicc >/dev/null; then
    echo "system MPI found: building mpi4py against it"
    MPICC=mpicc timeout 240 "${PIP[@]}" --no-binary mpi4py mpi4py
else
    echo "no MPI: bringing the MPICH wheel"
    timeout 120 "${PIP[@]}" mpich mpi4py
fi
python -c "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"

step "hpcopt (builds the compiled kernels)"
timeout 120 "${PIP[@]}" -e ".[test]" || timeout 120 "${PIP[@]}" -e .
python -c "from hpcopt.encoders import kernels; print('compiled kernels:', kernels.compiled())"
python -m hpcopt.cli info 2>/dev/null || hpcopt info || true

step "GPU tests"
T=(timeout 150 python -m pytest -q -p no:cacheprovider -o addopts=-ra)
"${T[@]}" tests/unit/test_codec_kernels.py tests/unit/test_gpu.py \
    "tests/unit/test_encoders.py::test_cupy_matches_numpy_shape" \
    "tests/unit/test_encoders.py::test_cupy_payload_bits_match_numpy"
STATUS=$?

step "throughput"
timeout 60 python benchmarks/gpu_encoders.py -n $((64 << 20)) -r 10

step "done: tests exit $STATUS"
exit $STATUS
