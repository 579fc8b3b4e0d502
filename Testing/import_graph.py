"""The project's static import graph (every ``import``, including those inside functions).

``project_graph(root)`` maps each module of the project to the project modules it
imports: the packages ``CalciumScoringLib`` and ``ArteryShorteningLib``, the two Slicer
module files, and the scripts of ``scripts/``, ``training/`` and ``Testing/`` (a script's
bare ``import name`` is its sibling ``name.py``, as Python resolves it when the script
runs).  ``cycles(graph)`` returns the import circles (strongly connected components of
more than one module); ``stage_graph(graph)`` collapses ``CalciumScoringLib.<stage>.*``
to its stage.
"""

import ast
from pathlib import Path

PACKAGES = {"CalciumScoringLib": "CalciumScoring/CalciumScoringLib",
            "ArteryShorteningLib": "ArteryShortening/ArteryShorteningLib"}
MODULE_FILES = {"CalciumScoring": "CalciumScoring/CalciumScoring.py",
                "ArteryShortening": "ArteryShortening/ArteryShortening.py"}
SCRIPT_FOLDERS = ("scripts", "training", "Testing")


def project_modules(root, packages=PACKAGES, module_files=MODULE_FILES, folders=SCRIPT_FOLDERS):
    """``{module name: (path, is_package, script folder or None)}``; scripts are named
    ``<folder>/<stem>``."""
    root = Path(root)
    mods = {}
    for name, rel in packages.items():
        base = root / rel
        for p in base.rglob("*.py"):
            if "__pycache__" in p.parts:
                continue
            parts = [name, *p.relative_to(base).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg, None)
    for name, rel in module_files.items():
        if (root / rel).exists():
            mods[name] = (root / rel, False, None)
    for folder in folders:
        for p in sorted((root / folder).glob("*.py")):
            mods[f"{folder}/{p.stem}"] = (p, False, folder)
    return mods


def _known_prefix(dotted, mods):
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in mods:
            return ".".join(parts[:n])
    return None


def _targets(node, name, is_pkg, folder, mods):
    if isinstance(node, ast.Import):
        for alias in node.names:
            if folder and f"{folder}/{alias.name}" in mods:
                yield f"{folder}/{alias.name}"
            elif (t := _known_prefix(alias.name, mods)):
                yield t
        return
    if node.level:
        package = name if is_pkg else name.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    elif folder and node.module and f"{folder}/{node.module}" in mods:
        yield f"{folder}/{node.module}"
        return
    else:
        base = node.module or ""
    for alias in node.names:
        if f"{base}.{alias.name}" in mods:  # ``from package import module``
            yield f"{base}.{alias.name}"
        elif (t := _known_prefix(base, mods)):
            yield t


def project_graph(root, **where):
    """``{module: set of project modules it imports}`` (self-imports left out)."""
    mods = project_modules(root, **where)
    graph = {}
    for name, (path, is_pkg, folder) in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps = {t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for t in _targets(node, name, is_pkg, folder, mods)}
        graph[name] = deps - {name}
    return graph


def cycles(graph):
    """The import circles of ``graph``: each a sorted list of the modules in one strongly
    connected component of two or more (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def stage_of(module, package="CalciumScoringLib"):
    """``CalciumScoringLib.<stage>`` for a module inside a stage sub-package, else the module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == package and len(parts) > 2 else module


def stage_graph(graph, package="CalciumScoringLib"):
    """``graph`` with every module of a stage sub-package collapsed to its stage."""
    out = {}
    for mod, deps in graph.items():
        s = stage_of(mod, package)
        out.setdefault(s, set()).update(stage_of(d, package) for d in deps)
    for s in out:
        out[s].discard(s)
    return out


def unresolved(root, **where):
    """``[(module, imported name)]`` for every import of a project package (absolute or
    relative) whose module is not in the project: a moved or renamed module left behind."""
    mods = project_modules(root, **where)
    roots = {m.split(".")[0] for m in mods if "/" not in m}
    out = []
    for name, (path, is_pkg, folder) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                bases = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = name if is_pkg else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    bases = [f"{package}.{node.module}" if node.module else package]
                else:
                    bases = [node.module or ""]
            else:
                continue
            out += [(name, b) for b in bases if b.split(".")[0] in roots and b not in mods]
    return out
