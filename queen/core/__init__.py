"""What the queen and the drone share, with no I/O: the errors, the wire protocol, the
job state machine, the models, the pipeline compiler (pipeline, yamlread, storable) and its
decisions (stages), git refs and credentials (refs), CurveZMQ key checks (curve), join tokens
(tokens) and the config (docs/design-notes.md)."""

__version__ = "0.1.0"

if __name__ != "apiary.core":  # queen/core/ is also reachable as apiary.queen.core in an editable install
    raise ImportError("import apiary.core, not " + __name__)
