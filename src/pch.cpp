// Translation unit that owns the precompiled header shared by every IRIS target.
