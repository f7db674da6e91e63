"""NIR (the Neuromorphic Intermediate Representation) in and out of softspike.

    export_nir(spec, weights, dt)  -> nir.NIRGraph     a spec-built network as a NIR graph
    write_nir(graph, path)                            the graph to a .nir (HDF5) file
    import_nir(graph_or_path, ...) -> Imported         a NIR graph as a spec and its weights

NIR writes continuous-time equations with time constants in seconds; softspike counts time in
steps. One time step is `dt` seconds: τ_steps = τ_NIR / dt. docs/nir.md lists every mapping.
"""

from __future__ import annotations

from softspike.nir.common import NIRError
from softspike.nir.export import export_nir, write_nir
from softspike.nir.importer import Imported, import_nir, read_nir

__all__ = ["Imported", "NIRError", "export_nir", "import_nir", "read_nir", "write_nir"]
