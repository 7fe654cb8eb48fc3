"""Context for a fragment that needs nothing but duralog."""

import duralog  # noqa: F401

# fragment
