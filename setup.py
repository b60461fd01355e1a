"""Only for the optional C extensions; everything else is in pyproject.toml.

`logcount.count._scan` is the hot loop of counting lines, `logcount.count._sum` the
aggregator's per-key sums. They are optional: without a C compiler the build goes on
without them and logcount uses its pure-Python path (the same counts, slower). LOGCOUNT_PURE_PYTHON=1 at run time uses the Python path even when it is built.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "logcount.count._scan",
            [
                "logcount/count/_scan.c",
                "logcount/count/_scan_match.c",
                "logcount/count/_scan_tables.c",
                "logcount/count/_scan_take.c",
            ],
            depends=["logcount/count/_scan.h", "logcount/count/_blake2b.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "logcount.count._sum",
            [
                "logcount/count/_sum.c",
                "logcount/count/_sum_sets.c",
                "logcount/count/_sum_numbers.c",
                "logcount/count/_sum_sketch.c",
                "logcount/count/_sum_json.c",
            ],
            depends=["logcount/count/_sum.h", "logcount/count/_blake2b.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
