"""Build hook for the optional C extensions: the F16C half-precision converter (x86-64
only) and the fused encoder kernels.

Everything else is declared in pyproject.toml. When an extension cannot be built (no
compiler, another architecture), hpcopt installs without it and uses NumPy instead.
"""

import platform

from setuptools import Extension, setup

extensions = [
    Extension(
        "hpcopt._codecs",
        ["hpcopt/_codecs.c"],
        extra_compile_args=["-O3", "-ffp-contract=off"],
        optional=True,
    )
]
if platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(
        Extension(
            "hpcopt._halfcast", ["hpcopt/_halfcast.c"], extra_compile_args=["-O3"], optional=True
        )
    )

setup(ext_modules=extensions)
