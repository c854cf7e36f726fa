"""Build hook for the optional F16C half-precision converter (x86-64 only).

Everything else is declared in pyproject.toml. When the extension cannot be built (no
compiler, another architecture), hpcopt installs without it and converts with NumPy.
"""

import platform

from setuptools import Extension, setup

extensions = []
if platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(
        Extension(
            "hpcopt._halfcast", ["hpcopt/_halfcast.c"], extra_compile_args=["-O3"], optional=True
        )
    )

setup(ext_modules=extensions)
