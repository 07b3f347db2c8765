"""The compiled line scanner (``meshlog/parse/_scanner.c``), built when a C compiler is there.

Everything else is in pyproject.toml. The scanner only makes parsing faster: without a compiler
the build goes on without it and meshlog parses with polars alone (``meshlog.parse.scanner``).
``MESHLOG_REQUIRE_SCANNER=1`` makes a failed build an error instead (scripts/test.sh, wheels).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRED = os.environ.get("MESHLOG_REQUIRE_SCANNER") == "1"


class OptionalBuildExt(build_ext):
    """build_ext that warns and goes on when the scanner cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all (setuptools raises its own kinds of errors)
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # the compiler failed: headers missing, unsupported platform
            self._skip(e)

    def _skip(self, e: Exception) -> None:
        if REQUIRED:
            raise e
        print(f"meshlog: the compiled scanner was not built ({e}); parsing uses polars alone", file=sys.stderr)


def _flags() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    return ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]


setup(
    ext_modules=[
        Extension(
            "meshlog.parse._scanner",
            ["meshlog/parse/_scanner.c"],
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
            extra_compile_args=_flags(),
            optional=not REQUIRED,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
