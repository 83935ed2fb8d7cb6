"""The import direction between the packages, read from their source (every import statement,
function bodies included): ``ganforge`` composes the others, ``api`` is the HTTP layer, and the
SDK side of ``ganforge`` installs and imports without the service or the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE_AND_ENGINE = {"api", "worker", "store", "gan_engine", "torch"}
# ganforge/cli/server.py runs the service: it may import it, but only inside its commands
SERVER_COMMANDS = REPO_ROOT / "ganforge" / "cli" / "server.py"


def _imported(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    if not top_level_only:
        return set().union(*(_imported(node) for node in ast.walk(tree)))
    found: set[str] = set()
    for statement in tree.body:  # module-level statements, `if TYPE_CHECKING:` blocks aside
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                break
            found |= _imported(node)
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("api", {"worker", "ganforge"}),
        ("gan_engine", {"api", "worker", "store", "ganforge"}),
        ("store", {"api", "worker", "ganforge"}),
        ("worker", {"api", "ganforge"}),
    ],
)
def test_package_imports_only_below_it(package: str, forbidden: set[str]) -> None:
    offending = {
        str(path.relative_to(REPO_ROOT)): sorted(imports(path) & forbidden)
        for path in modules(package)
        if imports(path) & forbidden
    }
    assert offending == {}


def test_sdk_and_client_commands_import_neither_service_nor_engine() -> None:
    client_modules = [path for path in modules("ganforge") if path != SERVER_COMMANDS]
    assert len(client_modules) >= 8
    offending = {
        str(path.relative_to(REPO_ROOT)): sorted(imports(path) & SERVICE_AND_ENGINE)
        for path in client_modules
        if imports(path) & SERVICE_AND_ENGINE
    }
    assert offending == {}
    at_load = imports(SERVER_COMMANDS, top_level_only=True)
    assert at_load & (SERVICE_AND_ENGINE | {"sqlalchemy"}) == set()
    assert imports(SERVER_COMMANDS) >= {"store", "worker"}  # inside the commands


def test_loading_the_sdk_and_the_cli_pulls_in_no_service_or_engine_module() -> None:
    code = (
        "import sys, ganforge, ganforge.cli; "
        "heavy = {'torch', 'sqlalchemy', 'fastapi', 'celery', 'api', 'worker', 'store', "
        "'gan_engine'}; print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stderr
