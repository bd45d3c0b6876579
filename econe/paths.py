"""Where the data directories (spec/, mappings/, templates/, etc/) live.

From a checkout they sit beside the packages; after `pip install .` they are installed as
data files under `<prefix>/share/econe/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    if (_CHECKOUT / "spec" / "ec2-query.yaml").exists():
        return _CHECKOUT
    return Path(sys.prefix) / "share" / "econe"


def data_dir(name: str) -> Path:
    """`spec`, `mappings`, `templates` or `etc`."""
    return data_root() / name
