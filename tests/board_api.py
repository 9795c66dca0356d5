"""What MicroPython modules and names a file uses, and whether a board has them: the boards'
API read from their PyPI stub packages, which `make setup` installs apart into .stubs/esp32,
.stubs/rp2 and .stubs/stdlib (installed together they overwrite each other). Used on
firmware/ (tests/test_board_api.py), the board apps (tests/test_board_manifests.py) and
examples/ (tests/test_examples.py)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
STUBS = ROOT / ".stubs"
BOARDS = {"esp32": "esp32", "rp2": "rp2"}  # stub folder -> port name in @mp_available(port=)
OWN_PACKAGE = "microsmtp"
IGNORED = {("micropython", "const")}  # the compiler's own; the CPython shim supplies it too
# On 1.23+ ports these are frozen Python modules typed by micropython-stdlib-stubs, whose
# typeshed copy sits in .stubs/stdlib/stdlib/.
STDLIB_MODULES = {"ssl", "asyncio"}
# Names a board has that no stub types. MicroPython's asyncio is a package (extmod/asyncio,
# frozen into the ESP32 and RP2 firmware by their manifests) whose `core` submodule holds
# the scheduler; its own stream.py waits on a socket with `core._io_queue.queue_read`, and
# microsmtp.aio does the same. micropython-stdlib-stubs types only the public API.
UNTYPED = {("asyncio", "core")}


def firmware_files():
    return sorted(p for p in FIRMWARE.rglob("*.py") if p.name != "manifest.py")


def where(path, node):
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return "%s:%d" % (shown, node.lineno)


def _own(module):
    return module == OWN_PACKAGE or module.startswith(OWN_PACKAGE + ".")


def collect_uses(files):
    """{(module, name or None): [where, ...]} for every built-in module firmware/ touches.

    Counted: `import m`, `from m import a`, `m.a` and `getattr(m, "a")` where m is bound
    by an import anywhere in the file (an import inside try/except ImportError counts like any
    other: the boards must have it). `hasattr(m, "a")` and `getattr(m, "a", default)` are
    probes for an optional name with a fallback, not uses. Names bound with
    `import m as alias` count package-wide, because the Client injects `import socket as net`
    and transport.py receives it as its `net` parameter.
    """
    uses = {}
    trees = [(path, ast.parse(path.read_text(), str(path))) for path in files]

    def use(module, name, where):
        if not _own(module) and (module, name) not in IGNORED:
            uses.setdefault((module, name), []).append(where)

    aliases = {}  # package-wide: alias -> module
    bindings = {}  # path -> {local name -> module}
    for path, tree in trees:
        bound = bindings[path] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    use(a.name, None, where(path, node))
                    if a.asname:
                        bound[a.asname] = aliases[a.asname] = a.name
                    else:
                        top = a.name.partition(".")[0]
                        bound[top] = top
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                use(node.module, None, where(path, node))
                for a in node.names:
                    if a.name != "*":
                        use(node.module, a.name, where(path, node))

    for path, tree in trees:
        bound = dict(aliases, **bindings[path])
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound):
                use(bound[node.value.id], node.attr, where(path, node))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "getattr" and len(node.args) == 2
                    and isinstance(node.args[0], ast.Name) and node.args[0].id in bound
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)):
                use(bound[node.args[0].id], node.args[1].value, where(path, node))
    return uses


def _stub_file(folder, module):
    base = folder.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".pyi"), base / "__init__.pyi"):
        if candidate.is_file():
            return candidate
    return None


def _star_sources(tree):
    return [n.module for n in tree.body if isinstance(n, ast.ImportFrom)
            and not n.level and n.module and [a.name for a in n.names] == ["*"]]


def _stdlib_folder():
    nested = STUBS / "stdlib" / "stdlib"
    return nested if nested.is_dir() else STUBS / "stdlib"


def find_module(board, module):
    """The .pyi that describes `module` on `board`, or None if the board lacks it.

    A board's own stubs first. Then micropython-stdlib-stubs, but only for ssl and asyncio and
    for modules the board stub package itself vouches for with a u-alias (uos.pyi is
    `from os import *`): os, io, sys, json, struct... are built into every port, yet typed only
    in that stdlib package, which also lists much a board lacks (typing, logging, os.path).
    """
    own = _stub_file(STUBS / board, module)
    if own is not None:
        return own
    vouched = module in STDLIB_MODULES
    if not vouched and "." not in module:
        alias = _stub_file(STUBS / board, "u" + module)
        vouched = alias is not None and module in _star_sources(ast.parse(alias.read_text()))
    return _stub_file(_stdlib_folder(), module) if vouched else None


def _available_on(node, port):
    """False if a @mp_available(port=...) decorator names other ports only."""
    for deco in getattr(node, "decorator_list", ()):
        if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "mp_available":
            for kw in deco.keywords:
                if kw.arg == "port" and isinstance(kw.value, (ast.Constant, ast.List, ast.Tuple)):
                    ports = ast.literal_eval(kw.value)
                    ports = [ports] if isinstance(ports, str) else list(ports)
                    if "*" not in ports and port not in ports:
                        return False
    return True


def _top_level(body):
    """Statements at module level, looking inside if/try/with blocks but not defs or classes."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody"):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _top_level(getattr(node, field, ()))
        for handler in getattr(node, "handlers", ()):
            yield from _top_level(handler.body)


def _target_names(target):
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _target_names(elt)


def _star_source(board, path, node):
    """The stub file behind `from x import *` (x on the board) or `from .x import *`."""
    if not node.level:
        return find_module(board, node.module)
    folder = path.parent
    for _ in range(node.level - 1):
        folder = folder.parent
    return _stub_file(folder, node.module) if node.module else None


def stub_names(board, path, seen=None):
    """Names a stub module defines; `from x import *` is followed (x looked up on the board)."""
    seen = set() if seen is None else seen
    if path in seen:
        return set()
    seen.add(path)
    tree = ast.parse(path.read_text(), str(path))
    port = BOARDS[board]
    names = set()
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if _available_on(node, port):
                names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_target_names(target))
        elif isinstance(node, ast.AnnAssign):
            names.update(_target_names(node.target))
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name == "*":
                    source = _star_source(board, path, node)
                    if source is not None:
                        names |= stub_names(board, source, seen)
                elif a.asname == a.name:  # stub re-export convention: `from x import a as a`
                    names.add(a.name)
        elif isinstance(node, ast.Import):
            names.update(a.asname for a in node.names if a.asname == a.name)
    return names


def missing_on(board, uses):
    missing = []
    names = {}
    for (module, name), where in sorted(uses.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if module not in names:
            stub = find_module(board, module)
            names[module] = None if stub is None else stub_names(board, stub)
        if names[module] is None:
            if name is None:
                missing.append("module %s (%s)" % (module, ", ".join(where)))
        elif name is not None and name not in names[module] and (module, name) not in UNTYPED:
            missing.append("%s.%s (%s)" % (module, name, ", ".join(where)))
    return missing
