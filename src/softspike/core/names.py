"""What every registered name obeys, shared by the registry's catalogs and the backend catalog."""

from __future__ import annotations

import re

#: Lowercase snake_case, as timm and pytest name their plugins.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: The distribution of an entry added at run time (not through an entry point).
RUNTIME = "<runtime>"
