"""Run records: which outputs a CalciumScoring run made for a volume, saved with the scene.

A record is a ``vtkMRMLScriptedModuleNode`` (attribute ``ModuleName`` = CalciumScoring)
referencing the input volume and the run's nodes, with the parameters as JSON, so a
reopened scene knows its last run and re-scoring updates the same outputs.  MRML
only (no pandas), so the module can look runs up without installing anything.
"""

RUN_MODULE = "CalciumScoring"
RUN_NEW = "VascularCalcium.RunCreated"
RUN_ROLES = ("arteries", "shortened", "calcifications", "table", "report")


def save_run(volume, nodes, parameters):
    """Record a run on a scripted-module node saved with the scene (one per volume).

    References: ``inputVolume`` and each of ``RUN_ROLES``; parameters as strings.
    Re-running on the same volume updates the record.  Returns the record node.
    """
    import json

    scene = volume.GetScene()
    record = find_run_node(volume)
    if record is None:
        record = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode",
                                         scene.GenerateUniqueName(f"{volume.GetName()} calcium run"))
        record.SetAttribute("ModuleName", RUN_MODULE)
        record.SetAttribute(RUN_NEW, "1")
    else:
        record.SetAttribute(RUN_NEW, "0")
    record.SetNodeReferenceID("inputVolume", volume.GetID())
    for role in RUN_ROLES:
        node = nodes.get(role)
        record.SetNodeReferenceID(role, node.GetID() if node is not None else None)
    record.SetParameter("parameters", json.dumps(parameters, default=str, sort_keys=True))
    return record


def find_run_node(volume):
    """The run record of ``volume`` in its scene, or ``None``."""
    scene = volume.GetScene()
    nodes = scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
    for i in range(nodes.GetNumberOfItems()):
        n = nodes.GetItemAsObject(i)
        if n.GetAttribute("ModuleName") == RUN_MODULE and \
                n.GetNodeReferenceID("inputVolume") == volume.GetID():
            return n
    return None


def last_run(volume):
    """``{"arteries", "shortened", "calcifications", "table": node, "parameters": dict}`` of the
    last run on ``volume`` (also after the scene was saved and reopened), or ``None``."""
    import json

    record = find_run_node(volume)
    if record is None:
        return None
    out = {role: record.GetNodeReference(role) for role in RUN_ROLES}
    out["parameters"] = json.loads(record.GetParameter("parameters") or "{}")
    return out


