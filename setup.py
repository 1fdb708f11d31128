"""Build step the pyproject.toml table cannot express: ship ``web/`` and ``migrations/`` inside
the wheel as ``shopify_app/web`` and ``shopify_app/migrations``.

They stay top-level folders in the repository; :mod:`shopify_app.resources` finds them inside
the installed package, or beside it in a checkout (an editable install copies nothing).
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("web", "migrations")


class BuildPy(build_py):
    """``build_py`` that also copies the shipped folders into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for folder in SHIPPED:
            for source in sorted(Path(folder).rglob("*")):
                if source.is_file() and "__pycache__" not in source.parts:
                    target = Path(self.build_lib, "shopify_app", source)
                    self.mkpath(str(target.parent))
                    self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildPy})
