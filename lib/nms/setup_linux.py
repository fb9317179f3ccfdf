"""Build the OKS NMS extension in place: `python setup_linux.py build_ext --inplace` (run by `make build`).

Needs only a C compiler and Cython; there is no CUDA code here, so nvcc is never looked for.
Without the build, `lib.nms` falls back to the NumPy implementation with the same results.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add, so the C arithmetic rounds like the NumPy fallback.
EXTENSIONS = [Extension('cpu_nms', ['cpu_nms.pyx'], extra_compile_args=['-ffp-contract=off'])]

setup(name='lib_nms', ext_modules=cythonize(EXTENSIONS, language_level=3))
