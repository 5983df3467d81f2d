"""Make the extension's private dependency folder importable, only when work needs it."""

from __future__ import annotations

import sys
from pathlib import Path


def vendor_dir() -> Path:
    from .prefs import user_data_dir

    return user_data_dir("vendor")


def activate_vendor() -> bool:
    """Put the vendor folder on ``sys.path`` (once); True when it exists and was added."""
    folder = vendor_dir()
    if not any(folder.iterdir()):
        return False
    path = str(folder)
    if path not in sys.path:
        sys.path.insert(0, path)
    return True
