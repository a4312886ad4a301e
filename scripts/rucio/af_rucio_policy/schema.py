"""Schema: exactly Rucio's generic one (this module stands for it, so Rucio logs no fallback warning)."""
import sys

import rucio.common.schema.generic as _generic

sys.modules[__name__] = _generic
