"""I/O helpers the queen and the drone both use (a socket's handshake monitor, a private file), kept
apart from `apiary.core`, which does no I/O. Only these two: what is a side's own stays with that side."""

if __name__ != "apiary.shared":  # queen/shared/ is also reachable as apiary.queen.shared in an editable install
    raise ImportError("import apiary.shared, not " + __name__)
