"""Reports: pure functions from an ``AccessLog`` / requests frame to small frames and dicts."""
