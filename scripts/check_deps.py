"""Check that pyproject.toml declares what the code imports, where it imports it, and no more.

A package imported without being declared installs by accident (as some other package's
dependency) until the day it doesn't; one declared and never imported is installed for nothing.
The imports of each tree are read with ``ast`` and mapped to distributions through the installed
metadata, so run it from the project's virtualenv (``./dev lint`` does). The trees:

* ``shopify_app/`` and ``migrations/`` ship in the wheel: ``[project] dependencies`` only;
* ``goldpan_sandbox/``: those and the ``sandbox`` extra;
* ``tests/``, ``benchmarks/``, ``scripts/``: all of those and the ``test`` extra.

Exit status 1 with one line per problem.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"shopify_app", "goldpan_sandbox", "tests", "migrations", "benchmarks", "scripts"}

# (trees, the dependency groups they may import from; the last group is the one they must use)
LAYERS = (
    (("shopify_app", "migrations"), ("dependencies",)),
    (("goldpan_sandbox",), ("dependencies", "sandbox")),
    (("tests", "benchmarks", "scripts"), ("dependencies", "sandbox", "test")),
)

NOT_IMPORTED = {
    "python-multipart": ("sandbox", "Starlette parses the sandbox's multipart uploads with it"),
    "psycopg": ("test", "SQLAlchemy's postgresql+psycopg driver, for the PostgreSQL pass"),
    "ruff": ("test", "lint command (./dev lint)"),
    "mypy": ("test", "type checker (./dev lint)"),
    "types-requests": ("test", "type stubs for mypy"),
    "import-linter": ("test", "import contracts (./dev lint)"),
    "pip-audit": ("test", "dependency audit (./dev audit)"),
}
"""Distributions declared though nothing imports them: the group each belongs in, and why."""


def normalise(name: str) -> str:
    """PEP 503 name, so ``PyJWT``, ``pyjwt`` and ``py_jwt``-style spellings compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_groups(pyproject: Path) -> dict[str, set[str]]:
    """``dependencies`` and each extra, as sets of normalised distribution names."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    groups = {"dependencies": project.get("dependencies", [])}
    groups.update(project.get("optional-dependencies", {}))
    return {group: {requirement_name(req) for req in reqs} for group, reqs in groups.items()}


def requirement_name(requirement: str) -> str:
    """``psycopg[binary]>=3.2`` → ``psycopg``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalise(match[1])


def imported_modules(tree: Path) -> dict[str, set[Path]]:
    """Top-level names of absolute imports under ``tree``, with the files importing each."""
    found: dict[str, set[Path]] = {}
    for path in sorted(tree.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path)
    return found


def problems(root: Path) -> list[str]:
    """Every undeclared, misplaced or unused dependency, one sentence each."""
    groups = declared_groups(root / "pyproject.toml")
    providers = {
        module: {normalise(d) for d in dists} for module, dists in packages_distributions().items()
    }
    found: list[str] = []
    for trees, allowed_groups in LAYERS:
        allowed = set().union(*(groups.get(g, set()) for g in allowed_groups))
        own = groups.get(allowed_groups[-1], set())
        used: set[str] = set()
        for tree in trees:
            for module, files in imported_modules(root / tree).items():
                if module in FIRST_PARTY or module in sys.stdlib_module_names:
                    continue
                where = min(str(f.relative_to(root)) for f in files)
                dists = providers.get(module)
                if not dists:
                    found.append(f"{where} imports {module!r}, which no installed package provides")
                    continue
                if dists & allowed:
                    used |= dists & own
                    continue
                found.append(
                    f"{where} imports {module!r} ({', '.join(sorted(dists))}), not declared in "
                    f"{' or '.join(allowed_groups)}"
                )
        group = allowed_groups[-1]
        needed = {dist for dist, (where, _why) in NOT_IMPORTED.items() if where == group}
        for dist in sorted(needed & used):
            found.append(f"{dist} is imported by {', '.join(trees)}: drop it from NOT_IMPORTED")
        for dist in sorted(own - used - needed):
            found.append(f"{dist} is declared in {group} but not imported by {', '.join(trees)}")
    return found


def main() -> int:
    """Print the problems; exit status 1 when there are any."""
    found = problems(ROOT)
    for line in found:
        print(f"check_deps: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
