def from_haiku(*a, **k): pass
def to_haiku(*a, **k): pass
