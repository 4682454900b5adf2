"""The service package is the service: nothing in it starts processes or needs the dev stack,
and its distribution holds nothing of the workshop."""

from __future__ import annotations

import ast
from configparser import ConfigParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from zdm_monitor.ops.cli import token

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "zdm_monitor"
# What only the development stack may use: process control and its PostgreSQL binaries.
FORBIDDEN = ("subprocess", "multiprocessing", "pgserver", "zdm_devstack")


def setup_cfg(folder: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read(folder / "setup.cfg", encoding="utf-8")
    return parser


def test_the_service_s_distribution_holds_and_requires_nothing_of_the_workshop() -> None:
    """The workshop is a distribution of its own (dev/), which requires the service."""
    service = setup_cfg(REPO)
    assert service["options.packages.find"]["include"].split() == ["zdm_monitor*"]
    assert service.options("options.entry_points") == ["console_scripts"]
    assert "zdm_devstack" not in service["options.entry_points"]["console_scripts"]
    extras = " ".join(service["options.extras_require"].values())
    assert "pgserver" not in service["options"]["install_requires"] + extras
    workshop = setup_cfg(REPO / "dev")
    requires = workshop["options"]["install_requires"]
    assert "zdm-monitor>=" in requires and "pgserver>=" in requires


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(SERVICE.rglob("*.py")), ids=lambda p: p.name)
def test_no_service_module_starts_processes_or_reaches_the_dev_stack(path: Path) -> None:
    wrong = {m for m in imported_modules(path) if m.split(".")[0] in FORBIDDEN}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


def module_name(path: Path) -> str:
    """zdm_monitor.api.monitoring for zdm_monitor/api/monitoring.py; a package's own name."""
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SERVICE.rglob("*.py")}


def package_imports(path: Path) -> set[str]:
    """The service modules a module imports, by their full names (relative imports)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            if node.module:
                base = f"{base}.{node.module}"
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


def test_the_service_s_imports_have_no_circle() -> None:
    graph = {name: package_imports(path) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_the_service_s_own_token_command_needs_the_real_key() -> None:
    """Without the dev stack, `token` signs only with ZDM_JWT_SECRET."""
    refused = CliRunner(env={"ZDM_JWT_SECRET": None}).invoke(token, [])
    assert refused.exit_code == 1
    assert "ZDM_JWT_SECRET is not set" in refused.stderr
    signed = CliRunner(env={"ZDM_JWT_SECRET": "k" * 40}).invoke(token, ["--subject", "ops"])
    assert signed.exit_code == 0, signed.output
    assert signed.stdout.count(".") == 2
