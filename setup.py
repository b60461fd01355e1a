"""Only for the optional C extension; everything else is in pyproject.toml.

`logcount.count._scan` is the hot loop of counting lines. It is optional: without a C compiler
the build goes on without it and logcount uses its pure-Python path (the same counts,
slower). LOGCOUNT_PURE_PYTHON=1 at run time uses the Python path even when it is built.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logcount.count._scan",
            ["logcount/count/_scan.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
