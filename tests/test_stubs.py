"""python/sparsetrain/_C.pyi describes the extension as built: the same public names, and for
every function (and layout constructor) the same parameters, in order, keyword-only where the
binding's are, with defaults where the binding has them (read from pybind11's signature line,
the first line of each __doc__)."""

import ast
import inspect
from pathlib import Path

import pytest

import sparsetrain
from sparsetrain import _C

STUB = Path(sparsetrain.__file__).with_name("_C.pyi")


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text())


def _stub_names(tree: ast.Module) -> dict:
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _split_top_level(text: str) -> list:
    """Split at the commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _bound_params(obj) -> list:
    """[(name, has_default)], with ("*", False) where keyword-only parameters begin, from
    pybind11's `name(params) -> result` line."""
    line = obj.__doc__.splitlines()[0]
    inner = line[line.index("(") + 1 : line.rindex(") ->")]
    params = []
    for part in _split_top_level(inner):
        if part in ("*", "/"):
            if part == "*":
                params.append(("*", False))
            continue
        name = part.split(":")[0].split("=")[0].strip()
        params.append((name, "=" in part))
    return params


def _stub_params(fn: ast.FunctionDef) -> list:
    a = fn.args
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(a.defaults)
    params = [(p.arg, i >= first_default) for i, p in enumerate(positional)]
    if a.kwonlyargs:
        params.append(("*", False))
        params += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return params


def _public(obj) -> set:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_the_stub_lists_every_public_name_and_no_other():
    stub = _stub_names(_stub())
    public_stub = {n for n in stub if not n.startswith("_")}
    assert public_stub == _public(_C)
    assert "__version__" in stub
    assert (STUB.parent / "py.typed").is_file()


FUNCTIONS = sorted(n for n in _public(_C) if inspect.isroutine(getattr(_C, n)))
CLASSES = sorted(n for n in _public(_C) if inspect.isclass(getattr(_C, n)))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_parameters_match_the_binding(name):
    fn = _stub_names(_stub())[name]
    assert isinstance(fn, ast.FunctionDef)
    assert _stub_params(fn) == _bound_params(getattr(_C, name))
    assert ast.get_docstring(fn), f"{name}: no docstring in the stub"


@pytest.mark.parametrize("cls_name", CLASSES)
def test_classes_match_the_binding(cls_name):
    cls = getattr(_C, cls_name)
    node = _stub_names(_stub())[cls_name]
    assert isinstance(node, ast.ClassDef) and ast.get_docstring(node)
    members = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
    init_params = _stub_params(members["__init__"])
    assert init_params[0] == ("self", False)
    assert init_params == _bound_params(cls.__init__)
    # Fields: the stub's properties are the class's public attributes, all read-only.
    props = {
        n
        for n, f in members.items()
        if any(isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list)
    }
    assert props == _public(cls)
    for field in props:
        assert isinstance(getattr(cls, field), property)
        assert getattr(cls, field).fset is None
